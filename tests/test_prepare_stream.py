"""`write_split` streams: what it holds does not grow with the split, rows reach the disk before the
input ends, and the folder is the one ``save_to_disk`` writes for the whole split (byte for byte)."""
from __future__ import annotations

import filecmp

import datasets
import numpy as np
import pyarrow as pa
import pytest

from gkd.data import synthetic as syn
from gkd.data.prepared import SegmentationSplit, _features, png_bytes, write_split
from gkd.errors import DataError


def noise_arrays(n: int, size: int = 32, seed: int = 0):
    rng = np.random.default_rng(seed)
    for i in range(n):
        yield f"img{i:05d}", rng.integers(0, 256, (size, size, 3), dtype=np.uint8), \
            rng.integers(0, 8, (size, size), dtype=np.uint8)


def noise_records(n: int, size: int = 32, seed: int = 0):
    """PNG-encoded random images (PNG cannot shrink noise, so every row costs the same bytes)."""
    for name, image, label in noise_arrays(n, size, seed):
        yield name, png_bytes(image), png_bytes(label)


def peak_arrow_bytes(path, records) -> int:
    """The most Arrow memory write_split holds while it consumes ``records`` (sampled at every record)."""
    base, peak = pa.total_allocated_bytes(), 0

    def watched():
        nonlocal peak
        for rec in records:
            peak = max(peak, pa.total_allocated_bytes() - base)
            yield rec
    write_split(path, watched())
    return peak


def test_memory_held_does_not_grow_with_the_split(tmp_path):
    """Twice the rows, the same Arrow memory (a writer that keeps its chunks until the end holds twice
    as much); a few thousand rows, because ``save_to_disk``'s write window is up to 1000 rows."""
    small = peak_arrow_bytes(tmp_path / "small", noise_records(2500))
    large = peak_arrow_bytes(tmp_path / "large", noise_records(5000))
    on_disk = sum(f.stat().st_size for f in (tmp_path / "large").glob("*.arrow"))
    assert large < 1.2 * small, (small, large)
    assert large < on_disk / 3, (large, on_disk)


def test_rows_reach_the_disk_before_the_input_ends(tmp_path):
    out, seen = tmp_path / "split", []

    def records():
        yield from noise_records(3000)
        seen.append(sum(f.stat().st_size for f in out.glob("*")))  # input exhausted: what is on disk yet?

    write_split(out, records())
    written = sum(f.stat().st_size for f in out.glob("*.arrow"))
    assert seen and seen[0] > written / 2, (seen, written)


def synthetic_records(n: int):
    return [(f"{i}", *syn.render("sim", (0, 1, i), 28)) for i in range(n)]


def save_to_disk_whole(path, records, chunk: int = 512) -> None:
    """The reference: ``datasets`` builds the whole table from its chunks, then writes it."""
    parts = []
    for start in range(0, len(records), chunk):
        rows = records[start:start + chunk]
        parts.append(datasets.Dataset.from_dict({
            "name": [r[0] for r in rows],
            "image": [{"bytes": png_bytes(r[1]), "path": None} for r in rows],
            "label": [{"bytes": png_bytes(r[2]), "path": None} for r in rows]}, features=_features()))
    (datasets.concatenate_datasets(parts) if len(parts) > 1 else parts[0]).save_to_disk(str(path))


@pytest.mark.parametrize("n", [7, 512, 1100])
def test_same_bytes_as_save_to_disk(tmp_path, n):
    """One chunk, exactly one, and chunks spanning windows: every file identical, fingerprint included
    (the embedded `synthetic` benchmark's prepared data must not change)."""
    records = synthetic_records(n)
    assert write_split(tmp_path / "stream", iter(records)) == n
    save_to_disk_whole(tmp_path / "whole", records)
    names = sorted(p.name for p in (tmp_path / "whole").iterdir())
    assert sorted(p.name for p in (tmp_path / "stream").iterdir()) == names
    for name in names:
        assert filecmp.cmp(tmp_path / "whole" / name, tmp_path / "stream" / name, shallow=False), name


def test_shards_roll_over_and_read_back_in_order(tmp_path):
    """A new shard once one holds ``shard_bytes``, at a write window's end (1000 rows of ~4 kB here)."""
    assert write_split(tmp_path / "d" / "train", noise_records(2500), shard_bytes=1_000_000) == 2500
    files = sorted(p.name for p in (tmp_path / "d" / "train").glob("*"))
    assert files == [f"data-0000{i}-of-00003.arrow" for i in range(3)] + ["dataset_info.json", "state.json"]
    split = SegmentationSplit(tmp_path, "d", "train", memo_bytes=0)
    assert len(split) == 2500
    expected = list(noise_arrays(2500))
    for i in (0, 999, 1000, 2499):
        image, label, _ = split[i]
        assert np.array_equal(image.permute(1, 2, 0).numpy(), expected[i][1])
        assert np.array_equal(label.numpy(), expected[i][2])
    assert datasets.load_from_disk(str(tmp_path / "d" / "train"))["name"] == [e[0] for e in expected]


def test_no_records_is_an_error(tmp_path):
    with pytest.raises(DataError, match="no records"):
        write_split(tmp_path / "empty", iter([]))
