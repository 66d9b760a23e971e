"""Teacher signals: what the frozen teacher provides, which stage caches it, and how it is read.

The one table of teacher outputs the methods consume (a method names what it needs in
``teacher_inputs`` and reads them as fields of a ``TeacherBatch``; adding a signal means a row here —
in ``SIGNALS`` and a field of ``TeacherBatch`` — and the method's own file):

==========  ==================  ===========  ==============================================================
signal      cached by           layout       what
==========  ==================  ===========  ==============================================================
tokens      teacher_features    (1+N)×D      final-LayerNorm CLS + patch tokens (stage-1 targets; ViTKD)
shallow     teacher_features    2×N×D        patch tokens after blocks 1 and 2 (ViTKD's mimicking)
last        teacher_features    D×h×w        last block's output on the token grid, before the norm (Af-DCD)
logits      teacher_task        K×h×w        the teacher segmenter's logits on the token grid (logit KD)
==========  ==================  ===========  ==============================================================

Every signal is computed on the *rendered view* the student sees (``gkd.data.views``), never derived
from another view. On disk (``features/<benchmark>/<teacher>/`` and
``models/<benchmark>/<teacher>/teacher_task/logits``)::

    <split-key>/index.json        images, views per image, shard size, shapes, what produced it
    <split-key>/<signal>-00000.npy   fp16 rows, image-major: row = image * views + view

Split keys: ``train`` (source training images, every view), ``generic`` (the generic stream, every
view), ``heldout/<domain>`` (plain view of held-out images: source val, generic val, each target's
test split — for the stage-1 fidelity report). Shards are ``.npy`` so that ``np.load(mmap_mode="r")``
reads just the rows a batch needs; a corrupt or truncated shard is detected from its header and size.

Stage 1 gets its targets from one of two sources with one interface (``CachedTeacher``,
``OnlineTeacher``: a batch of images → the view the student sees and the teacher's signals on it),
chosen by ``teacher_features.mode``. Both compute the signals with ``teacher_signals``, the same
function the cache is written with, so the two modes cannot drift apart; online, the teacher runs in
the training process (frozen, eval mode, no grad, bf16 autocast on GPUs that support it) on a fresh
augmented view per step (``gkd.data.views.augment``) and nothing is written to disk.
"""
from __future__ import annotations

import contextlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Optional

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


@dataclass(frozen=True)
class TeacherBatch:
    """The teacher's signals for one batch of views, as a method's ``task_terms`` receives them: one field
    per row of ``SIGNALS`` (B leading), detached; the signals the method did not declare in
    ``teacher_inputs`` are not read and stay None."""
    tokens: Optional[torch.Tensor] = None    # B×(1+N)×D
    shallow: Optional[torch.Tensor] = None   # B×2×N×D
    last: Optional[torch.Tensor] = None      # B×D×h×w
    logits: Optional[torch.Tensor] = None    # B×K×h×w

    @classmethod
    def of(cls, signals: dict[str, torch.Tensor] | None) -> "TeacherBatch":
        return cls(**{name: value.detach() for name, value in (signals or {}).items()})


SHALLOW_BLOCKS = (0, 1)  # "shallow": the patch tokens after blocks 1 and 2 (ViTKD)
STAGE1_SIGNALS = ("tokens",)  # what stage 1 (GKD, Proteus) reads: final-norm CLS + patch tokens


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


# ---------------------------------------------------------------------------------------------- stage-1 targets
def teacher_autocast(device) -> contextlib.AbstractContextManager:
    """bf16 autocast where the device runs it fast (CUDA with bf16 support); fp32 elsewhere — on CPU bf16
    is slower than fp32, and fp32 keeps the online targets equal to the cached ones."""
    device = torch.device(device)
    if device.type == "cuda" and torch.cuda.is_bf16_supported():
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


class CachedTeacher:
    """``teacher_features.mode: cache``: each sample one of its cached views (``views.choose`` from the
    sample's generator), rendered for the student, and the cached signals of exactly that view."""

    def __init__(self, cache: TeacherCache, views_cfg: ViewsConfig, data_seed: int,
                 names: tuple[str, ...] = STAGE1_SIGNALS):
        self.cache, self.views_cfg, self.data_seed, self.names = cache, views_cfg, data_seed, names

    def token_shape(self) -> tuple[int, int]:
        """(1 + patches, width) of the teacher's tokens."""
        return self.cache.shape("tokens")

    def __call__(self, images: torch.Tensor, idx: torch.Tensor, rngs, device) -> tuple[torch.Tensor, dict]:
        view = views_mod.choose(rngs, self.views_cfg.count)
        x = views_mod.render(images, idx, view, self.views_cfg, self.data_seed).to(device)
        return x, {name: self.cache.get(name, idx.numpy(), view.numpy()).to(device) for name in self.names}


class OnlineTeacher:
    """``teacher_features.mode: online``: the frozen teacher inside the training process, on the online view
    of each sample (``views.augment``, drawn from the sample's generator) — the very tensor the student gets.

    The teacher is a plain module on the device: never handed to ``accelerator.prepare``, so never wrapped
    for DDP (it has no gradients to synchronise) and never under the trained module's autocast."""

    def __init__(self, teacher: torch.nn.Module, augment_cfg, size: int, names: tuple[str, ...] = STAGE1_SIGNALS):
        self.teacher = teacher.eval().requires_grad_(False)
        self.augment_cfg, self.size, self.names = augment_cfg, size, names
        self._signals = teacher_signals(self.teacher, names)

    def token_shape(self) -> tuple[int, int]:
        return 1 + self.teacher.num_patches, self.teacher.embed_dim

    @torch.no_grad()
    def signals(self, x: torch.Tensor) -> dict[str, torch.Tensor]:
        """The teacher's signals on views ``x`` (float32 whatever the autocast computed them in)."""
        self.teacher.eval()  # nothing may switch the frozen teacher to training behaviour
        with teacher_autocast(x.device):
            return {name: value.float() for name, value in self._signals(x).items()}

    def __call__(self, images: torch.Tensor, idx: torch.Tensor, rngs, device) -> tuple[torch.Tensor, dict]:
        x = views_mod.augment(images, rngs, self.augment_cfg, self.size, device)
        return x, self.signals(x)
