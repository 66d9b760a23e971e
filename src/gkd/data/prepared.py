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
from gkd.errors import DataError

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


SHARD_BYTES = 500_000_000  # `datasets` save_to_disk's default shard size (MAX_SHARD_SIZE "500MB")


def _features():
    import datasets
    return datasets.Features({"name": datasets.Value("string"), "image": datasets.Image(),
                              "label": datasets.Image()})


class _ShardWriter:
    """Rows appended as Arrow tables go straight to ``data-NNNNN-of-MMMMM.arrow`` files, in the layout
    ``save_to_disk`` writes. It hands ``ArrowWriter`` the windows ``save_to_disk`` would (up to 1000
    rows or about 100 MB, cut from the concatenated chunks: the IPC bytes depend on them), so a split
    below one shard whose rows average under 100 kB (every `synthetic` split) is byte-identical to what
    ``save_to_disk`` makes of the whole table. Differences, because the split's size is not known up
    front: the window length comes from the rows seen so far, and a new shard starts at a window's end
    once the current one holds ``shard_bytes`` (``save_to_disk`` divides the rows evenly). Shard files
    get their names, which hold the total, when the last one is closed."""

    def __init__(self, folder: Path, features, shard_bytes: int = SHARD_BYTES):
        self.folder, self.features, self.shard_bytes = folder, features, shard_bytes
        self.pending: list = []          # tables whose rows do not fill a window yet
        self.rows_seen = self.bytes_seen = 0
        self.writer, self.shard_used, self.parts = None, 0, []

    def _window_rows(self) -> int:
        from datasets import config
        from datasets.arrow_writer import get_writer_batch_size_from_data_size
        return min(config.DEFAULT_MAX_BATCH_SIZE, get_writer_batch_size_from_data_size(self.rows_seen, self.bytes_seen))

    def add(self, table) -> None:
        import pyarrow as pa
        self.rows_seen, self.bytes_seen = self.rows_seen + len(table), self.bytes_seen + table.nbytes
        self.pending.append(table)
        while sum(len(t) for t in self.pending) >= (rows := self._window_rows()):
            joined = pa.concat_tables(self.pending)  # zero-copy: chunks stay what they were
            self._write(joined.slice(0, rows))
            self.pending = [joined.slice(rows)] if rows < len(joined) else []

    def _write(self, batch) -> None:
        from datasets.arrow_writer import ArrowWriter
        if self.writer is not None and self.shard_used >= self.shard_bytes:
            self._close_shard()
        if self.writer is None:
            self.parts.append(self.folder / f"data-{len(self.parts):05d}.arrow.part")
            self.writer = ArrowWriter(features=self.features, path=str(self.parts[-1]), embed_local_files=True)
        self.writer.write_table(batch)
        self.shard_used += batch.nbytes

    def _close_shard(self) -> None:
        self.writer.finalize()
        self.writer.close()
        self.writer, self.shard_used = None, 0

    def abandon(self) -> None:
        """Close the open file after a failure (the caller's temp folder goes with it)."""
        if self.writer is not None:
            self.writer.close()
            self.writer = None

    def close(self) -> list[str]:
        """Flush, close and name the shards; their file names in order."""
        if self.pending:
            import pyarrow as pa
            self._write(pa.concat_tables(self.pending))
            self.pending = []
        if self.writer is not None:
            self._close_shard()
        names = [f"data-{i:05d}-of-{len(self.parts):05d}.arrow" for i in range(len(self.parts))]
        for part, name in zip(self.parts, names):
            part.rename(self.folder / name)
        return names


def _write_state(folder: Path, files: list[str], stubs: list) -> None:
    """``state.json`` and ``dataset_info.json`` as ``save_to_disk`` writes them for the concatenation of
    the chunks; ``stubs`` stand in for the chunks (``_stub``)."""
    import datasets
    from datasets.utils.py_utils import asdict

    whole = datasets.concatenate_datasets(stubs) if len(stubs) > 1 else stubs[0]
    state = {key: whole.__dict__[key] for key in
             ("_fingerprint", "_format_columns", "_format_kwargs", "_format_type", "_output_all_columns")}
    state["_split"] = None if whole.split is None else str(whole.split)
    state["_data_files"] = [{"filename": name} for name in files]
    with open(folder / datasets.config.DATASET_STATE_JSON_FILENAME, "w", encoding="utf-8") as f:
        json.dump(state, f, indent=2, sort_keys=True)
    info = asdict(whole.info)
    with open(folder / datasets.config.DATASET_INFO_FILENAME, "w", encoding="utf-8") as f:
        json.dump({key: info[key] for key in sorted(info)}, f, indent=2)


def _stub(chunk):
    """A one-row stand-in for a written chunk: concatenating the stand-ins gives the fingerprint, format
    and info of the concatenated chunks (they depend on the chunks' fingerprints and infos, not their
    rows), without holding the rows. One row, not none: ``concatenate_datasets`` drops empty datasets."""
    import datasets
    import pyarrow as pa
    from datasets.table import InMemoryTable

    row = pa.Table.from_pylist([{"name": "", "image": None, "label": None}], schema=chunk.data.table.schema)
    return datasets.Dataset(InMemoryTable(row), info=chunk.info.copy(), fingerprint=chunk._fingerprint)


def write_split(path: Path, records: Iterable[tuple[str, np.ndarray | bytes, np.ndarray | bytes]],
                chunk: int = 512, chunk_bytes: int = 64 << 20, shard_bytes: int = SHARD_BYTES) -> int:
    """Write (name, image H×W×3 uint8, label H×W uint8) records as a ``datasets`` folder, streaming.

    Image and label may come already PNG-encoded (``png_bytes``, e.g. from worker processes). Records
    are consumed one at a time and written to disk a chunk at a time (``chunk`` records or
    ``chunk_bytes`` of PNG, whichever comes first), so memory holds one chunk of compressed bytes
    however long the split is: a GTA5 split is tens of GB. The folder is what ``save_to_disk`` writes
    for the whole split (same fingerprint: each chunk is a ``Dataset.from_dict`` as before), and
    ``load_from_disk`` reads it. A failure leaves a partial folder: callers write into a temp folder.
    """
    import datasets

    features = _features()
    path.mkdir(parents=True, exist_ok=True)
    shards = _ShardWriter(path, features, shard_bytes)
    stubs, batch, held, written = [], {"name": [], "image": [], "label": []}, 0, 0

    def flush():
        nonlocal held, written
        if batch["name"]:
            part = datasets.Dataset.from_dict(batch, features=features)
            shards.add(part.data.table)
            stubs.append(_stub(part))
            written += len(batch["name"])
            for v in batch.values():
                v.clear()
            held = 0

    try:
        for name, image, label in records:
            batch["name"].append(name)
            for key, value in (("image", image), ("label", label)):
                data = value if isinstance(value, bytes) else png_bytes(value)
                batch[key].append({"bytes": data, "path": None})
                held += len(data)
            if len(batch["name"]) >= chunk or held >= chunk_bytes:
                flush()
        flush()
    except BaseException:
        shards.abandon()
        raise
    if not stubs:
        raise DataError(f"{path}: the split has no records; every split needs at least one image")
    _write_state(path, shards.close(), stubs)
    return written


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
