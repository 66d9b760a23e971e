"""Teacher signals: what the frozen teacher provides, which stage caches it, and how it is read.

The one table of teacher outputs the methods consume (a method names what it needs in
``teacher_inputs``; adding a signal means a row here and the method's own file):

==========  ==================  ===========  ==============================================================
signal      cached by           layout       what
==========  ==================  ===========  ==============================================================
tokens      teacher_features    (1+N)×D      final-LayerNorm CLS + patch tokens (stage-1 targets; ViTKD)
shallow     teacher_features    2×N×D        patch tokens after blocks 1 and 2 (ViTKD's mimicking)
last        teacher_features    D×h×w        last block's output on the token grid, before the norm (Af-DCD)
logits      teacher_task        K×h×w        the teacher segmenter's logits on the token grid (logit KD)
==========  ==================  ===========  ==============================================================

Every signal is computed on the *rendered view* the student sees (``gkd.data.views``), never derived
from another view. On disk (``features/<benchmark>/<teacher>/`` and ``models/teacher_task/logits``)::

    <split-key>/index.json        images, views per image, shard size, shapes, what produced it
    <split-key>/<signal>-00000.npy   fp16 rows, image-major: row = image * views + view

Split keys: ``train`` (source training images, every view), ``generic`` (the generic stream, every
view), ``heldout/<domain>`` (plain view of held-out images: source val, generic val, each target's
test split — for the stage-1 fidelity report). Shards are ``.npy`` so that ``np.load(mmap_mode="r")``
reads just the rows a batch needs; a corrupt or truncated shard is detected from its header and size.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from tqdm import tqdm

from gkd import io
from gkd.config import ViewsConfig
from gkd.data import views as views_mod
from gkd.errors import ArtifactError

INDEX = "index.json"


@dataclass(frozen=True)
class Signal:
    stage: str      # the stage that caches it
    layout: str     # per-row shape, for the reader's checks and for people
    what: str


SIGNALS: dict[str, Signal] = {
    "tokens": Signal("teacher_features", "(1+N)×D", "final-LayerNorm CLS + patch tokens"),
    "shallow": Signal("teacher_features", "2×N×D", "patch tokens after blocks 1 and 2"),
    "last": Signal("teacher_features", "D×h×w", "last block output on the grid, before the final norm"),
    "logits": Signal("teacher_task", "K×h×w", "teacher segmenter logits on the grid"),
}
SHALLOW_BLOCKS = (0, 1)  # "shallow": the patch tokens after blocks 1 and 2 (ViTKD)


def heldout_key(domain: str) -> str:
    return f"heldout/{domain}"


def heldout_splits(meta) -> list[tuple[str, str]]:
    """(domain, split) of every held-out split a prepared benchmark has: source val, generic val, each
    target's test split — what ``teacher_features`` caches and the stage-1 fidelity check reads."""
    candidates = [(meta.source, "val"), ("generic", "val")] + [(t, "test") for t in meta.targets]
    return [(d, s) for d, s in candidates if s in meta.splits.get(d, {})]


class CenterCrop(torch.utils.data.Dataset):
    """The held-out view: the centred ``size``×``size`` crop of each image (identity at that size). Real
    benchmarks keep evaluation images larger than the training crop (sliding-window evaluation); the
    teacher cache of held-out images and the student's fidelity check both read them through this."""

    def __init__(self, dataset, size: int):
        self.dataset, self.size = dataset, size

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, i):
        image, label, index = self.dataset[i]
        h, w = image.shape[-2:]
        if h < self.size or w < self.size:
            raise ArtifactError(f"held-out image {index} is {h}x{w}, smaller than the benchmark's image_size "
                                f"{self.size}: re-run `prepare`")
        top, left = (h - self.size) // 2, (w - self.size) // 2
        crop = (slice(top, top + self.size), slice(left, left + self.size))
        return image[(...,) + crop].contiguous(), (label[crop] if label.ndim == 2 else label), index


def save_shard(directory: Path, name: str, k: int, rows: np.ndarray) -> None:
    """Write shard ``k`` of signal ``name`` (fp16) atomically."""
    with io.atomic_path(directory / f"{name}-{k:05d}.npy") as tmp:
        with open(tmp, "wb") as fh:
            np.save(fh, rows.astype(np.float16))


def write_index(directory: Path, num_images: int, views: int, shard_size: int, shapes: dict[str, tuple],
                info: dict) -> None:
    """``shard_size`` counts images: a shard holds ``shard_size * views`` rows."""
    io.write_json(directory / INDEX, {
        "num_images": num_images, "views": views, "shard_size": shard_size, "dtype": "float16",
        "arrays": {k: {"shape": list(s), "shards": -(-num_images // shard_size)} for k, s in shapes.items()}, **info})


class TeacherCache:
    """Read access to one cached split: ``get(signal, image indices, view numbers)`` as float tensors."""

    def __init__(self, directory: str | Path):
        self.directory = Path(directory)
        index_path = self.directory / INDEX
        if not index_path.is_file():
            raise ArtifactError(f"no teacher cache at {str(self.directory)!r} (missing {INDEX}); run the stage that "
                                f"makes it (teacher_features, or teacher_task for logits)")
        self.index = json.loads(index_path.read_text())
        self.num_images = self.index["num_images"]
        self.views = self.index.get("views", 1)
        self.shard_size = self.index["shard_size"]
        self._arrays = {name: [self._open(name, k) for k in range(spec["shards"])]
                        for name, spec in self.index["arrays"].items()}

    def shape(self, name: str) -> tuple[int, ...]:
        return tuple(self.index["arrays"][name]["shape"])

    def _open(self, name: str, k: int) -> np.ndarray:
        path = self.directory / f"{name}-{k:05d}.npy"
        images = min(self.shard_size, self.num_images - k * self.shard_size)
        shape = (images * self.views, *self.shape(name))
        try:
            arr = np.load(path, mmap_mode="r")
        except FileNotFoundError:
            raise ArtifactError(f"teacher cache shard {str(path)!r} is missing; rerun {SIGNALS[name].stage}") from None
        except (ValueError, OSError) as err:
            raise ArtifactError(f"teacher cache shard {str(path)!r} is corrupt ({err}); expected a float16 array of "
                                f"shape {shape}; rerun {SIGNALS[name].stage}") from None
        if arr.shape != shape or arr.dtype != np.float16:
            raise ArtifactError(f"teacher cache shard {str(path)!r} has shape {arr.shape} {arr.dtype}, expected "
                                f"{shape} float16; rerun {SIGNALS[name].stage}")
        return arr

    def get(self, name: str, images, views=None) -> torch.Tensor:
        """Rows of signal ``name`` for images ``images`` seen as views ``views`` (default: view 0)."""
        if name not in self._arrays:
            raise ArtifactError(f"teacher cache {str(self.directory)!r} holds no {name!r} (has "
                                f"{', '.join(sorted(self._arrays))})")
        idx = np.asarray(images, dtype=np.int64)
        v = np.zeros_like(idx) if views is None else np.asarray(views, dtype=np.int64)
        if (v >= self.views).any():
            raise ArtifactError(f"teacher cache {str(self.directory)!r} has {self.views} views per image, asked for "
                                f"view {int(v.max())}; rerun teacher_features after changing `views`")
        shards, rows = idx // self.shard_size, (idx % self.shard_size) * self.views + v
        arrays = self._arrays[name]
        out = np.stack([arrays[s][r] for s, r in zip(shards, rows)])
        return torch.from_numpy(out.astype(np.float32))

    def check(self, num_images: int, views: int, what: str) -> "TeacherCache":
        """Fail early (before training) when the cache does not match the split and the views config."""
        if self.num_images != num_images or self.views != views:
            raise ArtifactError(f"teacher cache {str(self.directory)!r} holds {self.num_images} images x {self.views} "
                                f"views, {what} needs {num_images} x {views}; rerun the stage that makes it")
        return self


@torch.no_grad()
def extract(signals: Callable[[torch.Tensor], dict[str, torch.Tensor]], dataset, directory: Path, *,
            views_cfg: ViewsConfig | None, seed: int, batch_size: int, shard_size: int, desc: str,
            device: str | torch.device = "cpu", rank: int = 0, world: int = 1) -> dict[str, tuple]:
    """Run ``signals`` (float views B×3×H×W → named B×… tensors) on every view of every image of
    ``dataset`` and write this rank's shards (shard k on rank k mod world). Returns per-row shapes."""
    n = len(dataset)
    v_count = 1 if views_cfg is None else views_cfg.count
    shards = range(rank, -(-n // shard_size), world)
    bar = tqdm(total=sum(min(shard_size, n - k * shard_size) for k in shards), desc=desc, disable=rank != 0,
               mininterval=5)
    per_batch = max(1, batch_size // v_count)
    shapes: dict[str, tuple] = {}
    for k in shards:
        parts: dict[str, list] = {}
        stop = min(n, (k + 1) * shard_size)
        for start in range(k * shard_size, stop, per_batch):
            idx = torch.arange(start, min(stop, start + per_batch))
            images = torch.stack([dataset[int(i)][0] for i in idx])
            index = idx.repeat_interleave(v_count)                       # image-major: all views of one image
            view = torch.arange(v_count).repeat(len(idx))
            if views_cfg is None:
                x = images.float() / 255.0
            else:
                x = views_mod.render(images.repeat_interleave(v_count, dim=0), index, view, views_cfg, seed)
            for name, value in signals(x.to(device)).items():
                parts.setdefault(name, []).append(value.half().cpu())
            bar.update(len(idx))
        for name, chunks in parts.items():
            rows = torch.cat(chunks).numpy()
            save_shard(directory, name, k, rows)
            shapes[name] = tuple(rows.shape[1:])
    bar.close()
    return shapes


def teacher_signals(teacher, names: tuple[str, ...]) -> Callable[[torch.Tensor], dict[str, torch.Tensor]]:
    """The teacher backbone as a function of a view batch → the requested signals of the table above."""
    def run(x: torch.Tensor) -> dict[str, torch.Tensor]:
        taps = SHALLOW_BLOCKS if "shallow" in names else ()
        out = teacher.forward_tokens(x, with_levels="last" in names, taps=taps)
        got = {"tokens": out[0]}
        if "last" in names:
            got["last"] = out[1][-1]                          # B×D×h×w
        if "shallow" in names:
            got["shallow"] = torch.stack(out[2], dim=1)       # B×2×N×D
        return {k: got[k] for k in names}
    return run
