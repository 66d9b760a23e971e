"""The one on-disk format every benchmark is converted into, and its torch view.

``data/prepared/<benchmark>/``
  ``meta.json``                 classes, palette, source/target domains, image size, split sizes
  ``<domain>/<split>/``         a Hugging Face ``datasets`` folder: image (PNG), label (PNG, L), name

Labels hold class indices ``0..K-1`` and 255 for "ignore". Later stages never look at raw data.
"""
from __future__ import annotations

import io
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

import numpy as np
import torch

from gkd.config import ConfigError

IGNORE = 255


@dataclass(frozen=True)
class BenchmarkMeta:
    name: str
    classes: list[str]
    palette: list[list[int]]
    source: str
    targets: list[str]
    image_size: int
    splits: dict[str, dict[str, int]]  # domain -> split -> number of images

    @property
    def num_classes(self) -> int:
        return len(self.classes)


def read_meta(root: str | Path) -> BenchmarkMeta:
    path = Path(root) / "meta.json"
    if not path.is_file():
        raise ConfigError(f"{str(root)!r} is not a prepared benchmark (no meta.json); run the prepare stage")
    return BenchmarkMeta(**json.loads(path.read_text()))


PNG_LEVEL = 1  # zlib level: at the default 6, PNG encoding was half of the `prepare` stage's time


def png_bytes(array: np.ndarray) -> bytes:
    """uint8 H×W×3 image or H×W label → PNG bytes (lossless; ``PNG_LEVEL`` trades size for speed)."""
    from PIL import Image
    buf = io.BytesIO()
    Image.fromarray(array).save(buf, format="PNG", compress_level=PNG_LEVEL)
    return buf.getvalue()


def write_split(path: Path, records: Iterable[tuple[str, np.ndarray | bytes, np.ndarray | bytes]],
                chunk: int = 512) -> int:
    """Write (name, image H×W×3 uint8, label H×W uint8) records as a ``datasets`` folder.

    Image and label may come already PNG-encoded (``png_bytes``, e.g. from worker processes). Records
    are encoded chunk by chunk, so memory holds compressed bytes, never raw pixels.
    """
    import datasets

    features = datasets.Features({"name": datasets.Value("string"), "image": datasets.Image(),
                                  "label": datasets.Image()})
    parts, batch = [], {"name": [], "image": [], "label": []}

    def flush():
        if batch["name"]:
            parts.append(datasets.Dataset.from_dict(batch, features=features))
            for v in batch.values():
                v.clear()

    for name, image, label in records:
        batch["name"].append(name)
        for key, value in (("image", image), ("label", label)):
            batch[key].append({"bytes": value if isinstance(value, bytes) else png_bytes(value), "path": None})
        if len(batch["name"]) >= chunk:
            flush()
    flush()
    if not parts:
        raise ValueError(f"no records for {path}")
    ds = datasets.concatenate_datasets(parts) if len(parts) > 1 else parts[0]
    ds.save_to_disk(str(path))
    return len(ds)


def open_split(root: str | Path, domain: str, split: str):
    """The ``datasets`` object of one split, with a clear error if it is missing."""
    import datasets
    path = Path(root) / domain / split
    if not path.is_dir():
        meta = read_meta(root)
        have = [f"{d}/{s}" for d, ss in meta.splits.items() for s in ss]
        raise ConfigError(f"split {domain}/{split} not found under {str(root)!r}; available: {', '.join(have)}")
    return datasets.load_from_disk(str(path))


class SegmentationSplit(torch.utils.data.Dataset):
    """(image uint8 3×H×W, label int64 H×W, index) from a prepared split; decoding is lazy.

    Decoded images are kept (up to ``memo_bytes`` per split) because training reads every image once
    per epoch and PNG decoding took 7 % of a 12-block ViT-Ti's training loop on CPU; large real splits
    simply stop memoising at the budget. Single-pass readers (evaluation, feature extraction) pass 0.
    """

    def __init__(self, root: str | Path, domain: str, split: str, with_labels: bool = True,
                 memo_bytes: int = 1 << 30):
        self.ds = open_split(root, domain, split)
        self.with_labels = with_labels
        self.memo_bytes = memo_bytes
        cols = ["image", "label"] if with_labels else ["image"]
        self.ds = self.ds.select_columns(cols)
        self._memo: dict[int, tuple[torch.Tensor, torch.Tensor]] = {}
        self._memo_used = 0

    def __len__(self) -> int:
        return len(self.ds)

    def _decode(self, i: int) -> tuple[torch.Tensor, torch.Tensor]:
        row = self.ds[i]
        image = torch.from_numpy(np.array(row["image"].convert("RGB"))).permute(2, 0, 1).contiguous()
        if not self.with_labels:
            return image, torch.zeros(0, dtype=torch.uint8)
        return image, torch.from_numpy(np.array(row["label"], dtype=np.uint8))

    def __getitem__(self, i: int):
        i = int(i)
        pair = self._memo.get(i)
        if pair is None:
            pair = self._decode(i)
            size = pair[0].nbytes + pair[1].nbytes
            if self._memo_used + size <= self.memo_bytes:
                self._memo[i] = pair
                self._memo_used += size
        image, label = pair
        return image.clone(), label.long(), i  # copies: callers may write into what they get


def to_float(images: torch.Tensor) -> torch.Tensor:
    """uint8 B×3×H×W → float in [0, 1] (normalisation lives in the backbone)."""
    return images.float().div_(255.0)
