"""`gkd convert-isprs` on tiny tiles in the official ISPRS archive layout, read back with the ISPRS readers.

The fake tiles are small (clip 16, stride 8 instead of 512 / 256) but named, zipped and colour-coded as
the official archives are, with the archives' other files as decoys (world files, full-boundary labels,
Vaihingen's gts_for_participants under the image names, its extra area9 ground truth). Expected boxes
and label values are computed here independently of the converter: boxes from "multiples of the clip
that fit, plus one flush with the border", values from the ISPRS colour table.
"""
from __future__ import annotations

import io
import logging
import zipfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from gkd.cli import main as gkd
from gkd.data import isprs
from gkd.data.convert_isprs import patch_boxes
from gkd.data.readers import get_reader

CLIP, STRIDE = 16, 8
CLASS_COLOURS = {(255, 255, 255): 1, (0, 0, 255): 2, (0, 255, 255): 3, (0, 255, 0): 4, (255, 255, 0): 5,
                 (255, 0, 0): 6}  # ISPRS RGB colour -> value the converter writes (0 for anything else)
LABEL_COLOURS = [*CLASS_COLOURS, (0, 0, 0), (12, 200, 77)]  # + eroded boundary (black) and a stray colour
POTSDAM_TILES = sorted(isprs.POTSDAM_TRAIN_TILES | isprs.POTSDAM_VAL_TILES)
VAIHINGEN_TILES = sorted(isprs.VAIHINGEN_TRAIN_TILES | isprs.VAIHINGEN_VAL_TILES)
POTSDAM_SIZE = (40, 36)  # H, W: 3 rows × 3 columns at clip 16, the last of each flush with the border


def vaihingen_size(tile: str) -> tuple[int, int]:
    k = int(tile[4:])
    return 33 + k % 7, 30 + (3 * k) % 11  # Vaihingen tiles differ in size


def expected_boxes(height: int, width: int, clip: int = CLIP) -> list[tuple[int, int, int, int]]:
    def origins(extent):
        return sorted(set(range(0, extent - clip + 1, clip)) | {extent - clip})
    return [(x, y, x + clip, y + clip) for y in origins(height) for x in origins(width)]


def colour_values(rgb: np.ndarray) -> np.ndarray:
    """The converter's values 0..6 of a colour-coded label, by a plain per-pixel table lookup."""
    flat = [CLASS_COLOURS.get(tuple(c), 0) for c in rgb.reshape(-1, 3).tolist()]
    return np.array(flat, np.uint8).reshape(rgb.shape[:2])


def tif(array: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(array).save(buf, format="TIFF")
    return buf.getvalue()


def write_archive(folder: Path, name: str, members: dict[str, bytes], zipped: bool) -> None:
    """``members`` as the official zip ``name``, or as the files its extraction gives."""
    folder.mkdir(parents=True, exist_ok=True)
    if zipped:
        with zipfile.ZipFile(folder / name, "w", zipfile.ZIP_DEFLATED) as zf:
            for member, data in members.items():
                zf.writestr(member, data)
    else:
        for member, data in members.items():
            (folder / member).parent.mkdir(parents=True, exist_ok=True)
            (folder / member).write_bytes(data)


def make_tiles(tiles: list[str], size, seed: int) -> dict[str, dict[str, np.ndarray]]:
    rng = np.random.default_rng(seed)
    out = {}
    for tile in tiles:
        h, w = size(tile)
        out[tile] = {"label": np.array(LABEL_COLOURS, np.uint8)[rng.integers(0, len(LABEL_COLOURS), (h, w))],
                     "RGB": rng.integers(0, 256, (h, w, 3), dtype=np.uint8),
                     "IRRG": rng.integers(0, 256, (h, w, 3), dtype=np.uint8)}
    return out


def official_potsdam(folder: Path, zipped: bool = True, drop: tuple[str, str] | None = None, tiles=None,
                     labels: str = "noBoundary", seed: int = 1) -> dict:
    """2_Ortho_RGB.zip, 3_Ortho_IRRG.zip, 5_Labels_all_noBoundary.zip (+ decoys); the tiles' arrays."""
    tiles = tiles or make_tiles(POTSDAM_TILES, lambda t: POTSDAM_SIZE, seed)
    rgb, irrg, eroded, full = {}, {}, {}, {}
    for t, arrays in tiles.items():
        if drop != (t, "RGB"):
            rgb[f"2_Ortho_RGB/top_potsdam_{t}_RGB.tif"] = tif(arrays["RGB"])
            rgb[f"2_Ortho_RGB/top_potsdam_{t}_RGB.tfw"] = b"0.05\n0\n0\n-0.05\n0\n0\n"  # world file: ignored
        if drop != (t, "IRRG"):
            irrg[f"3_Ortho_IRRG/top_potsdam_{t}_IRRG.tif"] = tif(arrays["IRRG"])
        if drop != (t, "label"):
            eroded[f"top_potsdam_{t}_label_noBoundary.tif"] = tif(arrays["label"])
        full[f"top_potsdam_{t}_label.tif"] = tif(np.full_like(arrays["label"], 255))  # full-boundary: not used
    write_archive(folder, "2_Ortho_RGB.zip", rgb, zipped)
    write_archive(folder, "3_Ortho_IRRG.zip", irrg, zipped)
    if labels in ("noBoundary", "both"):
        write_archive(folder, "5_Labels_all_noBoundary.zip", eroded, zipped)
    if labels in ("full", "both"):
        write_archive(folder, "5_Labels_all.zip", dict(list(full.items())[:3] if labels == "both" else full), True)
    return tiles


def official_vaihingen(folder: Path, zipped: bool = True) -> dict:
    tiles = make_tiles(VAIHINGEN_TILES, vaihingen_size, seed=2)
    images = {f"top/top_mosaic_09cm_{t}.tif": tif(a["IRRG"]) for t, a in tiles.items()}
    # decoys under the image names and other names: full-boundary training labels, a DSM
    images.update({f"gts_for_participants/top_mosaic_09cm_{t}.tif": tif(np.full_like(a["label"], 255))
                   for t, a in tiles.items() if t in isprs.VAIHINGEN_TRAIN_TILES})
    images["dsm/dsm_09cm_matching_area1.tif"] = tif(np.zeros((33, 30), np.uint8))
    labels = {f"top_mosaic_09cm_{t}_noBoundary.tif": tif(a["label"]) for t, a in tiles.items()}
    labels["top_mosaic_09cm_area9_noBoundary.tif"] = tif(tiles["area1"]["label"])  # on no split list: dropped
    write_archive(folder, "ISPRS_semantic_labeling_Vaihingen.zip", images, zipped)
    write_archive(folder, "ISPRS_semantic_labeling_Vaihingen_ground_truth_eroded_COMPLETE.zip", labels, zipped)
    return tiles


def convert(capsys, dataset: str, archives: Path, out: Path, *extra: str) -> tuple[int, str, str]:
    rc = gkd(["convert-isprs", "--dataset", dataset, "--archives", str(archives), "--out", str(out),
              "--clip-size", str(CLIP), "--stride", str(STRIDE), *extra])
    captured = capsys.readouterr()
    return rc, captured.out, captured.err


def check_converted(root: Path, reader_name: str, modality: str, tiles: dict, train: frozenset, size) -> int:
    """Every patch: name, split, pixels at its box, label values; returns the number of patches."""
    reader = get_reader(reader_name)
    n = 0
    for split in ("train", "val"):
        split_tiles = [t for t in tiles if (t in train) == (split == "train")]
        expected = {f"{t}_{x0}_{y0}_{x1}_{y1}.png": (t, (x0, y0, x1, y1))
                    for t in split_tiles for x0, y0, x1, y1 in expected_boxes(*size(t))}
        samples = reader.samples(root, split)
        assert sorted(s.image.name for s in samples) == sorted(expected)
        for s in samples:
            tile, (x0, y0, x1, y1) = expected[s.image.name]
            assert s.label.name == s.image.name and s.label.parent == root / "ann_dir" / split
            np.testing.assert_array_equal(reader.read_image(s.image), tiles[tile][modality][y0:y1, x0:x1])
            values = colour_values(tiles[tile]["label"][y0:y1, x0:x1])
            with Image.open(s.label) as im:
                assert im.mode == "L"
                np.testing.assert_array_equal(np.asarray(im), values)
            trainids = np.where(values == 0, 255, values.astype(np.int64) - 1)
            np.testing.assert_array_equal(reader.read_label(s.label), trainids)
        n += len(samples)
    return n


def no_leftovers(parent: Path, out: Path) -> None:
    assert not out.exists()
    assert not [p.name for p in parent.iterdir() if p.name.startswith(f".{out.name}.")]


# --- the cutting rule -------------------------------------------------------------------------------------
def test_a_potsdam_tile_gives_144_patches_and_the_official_counts():
    boxes = patch_boxes(6000, 6000)
    origins = sorted({x0 for x0, _, _, _ in boxes})
    assert origins == [*range(0, 5121, 512), 5488] and len(boxes) == 144
    assert all(x1 - x0 == 512 and y1 - y0 == 512 for x0, y0, x1, y1 in boxes)
    assert (len(isprs.POTSDAM_TRAIN_TILES) * 144, len(isprs.POTSDAM_VAL_TILES) * 144) == (3456, 2016)


@pytest.mark.parametrize("height,width,clip,stride", [(40, 36, 16, 8), (48, 48, 16, 8), (16, 17, 16, 8),
                                                      (2566, 1887, 512, 256), (1000, 700, 100, 30)])
def test_boxes_are_clip_multiples_plus_one_flush_with_the_border(height, width, clip, stride):
    assert sorted(patch_boxes(height, width, clip, stride)) == sorted(expected_boxes(height, width, clip))


# --- Potsdam ------------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def potsdam(tmp_path_factory):
    base = tmp_path_factory.mktemp("potsdam")
    tiles = official_potsdam(base / "archives", labels="both")
    assert gkd(["convert-isprs", "--dataset", "potsdam", "--archives", str(base / "archives"),
                "--out", str(base / "raw" / "potsdam"), "--clip-size", str(CLIP), "--stride", str(STRIDE)]) == 0
    return base, tiles


def test_potsdam_zips_become_the_rgb_and_irrg_patch_layouts(potsdam):
    base, tiles = potsdam
    out = base / "raw" / "potsdam"
    assert sorted(p.name for p in out.iterdir()) == ["IRRG", "RGB"]
    per_tile = len(expected_boxes(*POTSDAM_SIZE))
    for reader, modality in (("potsdam_rgb", "RGB"), ("potsdam_irrg", "IRRG")):
        n = check_converted(out / modality, reader, modality, tiles, isprs.POTSDAM_TRAIN_TILES, lambda t: POTSDAM_SIZE)
        assert n == 38 * per_tile
    for rgb in (out / "RGB" / "ann_dir").rglob("*.png"):  # the label patches of both modalities are one cut
        assert (out / "IRRG" / rgb.relative_to(out / "RGB")).read_bytes() == rgb.read_bytes()
    assert not [p for p in (base / "raw").iterdir() if p.name != "potsdam"]  # no temporary folder left


def test_the_benchmark_root_layout_is_what_the_readers_default_to(potsdam):
    base, _ = potsdam
    for name in ("potsdam_rgb", "potsdam_irrg"):
        reader = get_reader(name)
        assert reader.samples(base / "raw" / reader.folder, "val")


def test_extracted_tiles_give_the_same_patches_and_win_over_their_zips(tmp_path, potsdam, capsys):
    base, tiles = potsdam
    archives = tmp_path / "archives"
    official_potsdam(archives / "0_extracted", zipped=False, tiles=tiles)  # listed before the zips
    official_potsdam(archives, zipped=True, tiles={t: {**a, "RGB": 255 - a["RGB"]} for t, a in tiles.items()})
    rc, out, err = convert(capsys, "potsdam", archives, tmp_path / "potsdam")
    assert rc == 0, err
    assert "potsdam_rgb: 216 train patches, 126 val patches" in out and "datasets:" in out
    ref = base / "raw" / "potsdam"
    files = sorted(p.relative_to(ref) for p in ref.rglob("*.png"))
    assert files == sorted(p.relative_to(tmp_path / "potsdam") for p in (tmp_path / "potsdam").rglob("*.png"))
    assert all((tmp_path / "potsdam" / f).read_bytes() == (ref / f).read_bytes() for f in files)


# --- Vaihingen ------------------------------------------------------------------------------------------------
def test_vaihingen_zips_become_the_patch_layout_and_area9_is_dropped(tmp_path, capsys, caplog):
    tiles = official_vaihingen(tmp_path / "archives")
    with caplog.at_level(logging.WARNING, logger="gkd.data"):
        rc, out, err = convert(capsys, "vaihingen", tmp_path / "archives", tmp_path / "vaihingen")
    assert rc == 0, err
    assert "area9" in caplog.text and "skipped" in caplog.text
    n = check_converted(tmp_path / "vaihingen", "vaihingen_irrg", "IRRG", tiles, isprs.VAIHINGEN_TRAIN_TILES,
                        vaihingen_size)
    assert n == sum(len(expected_boxes(*vaihingen_size(t))) for t in tiles)
    assert not list((tmp_path / "vaihingen").rglob("area9_*"))


# --- errors: one line, before anything is written ------------------------------------------------------------
def one_error(rc: int, err: str) -> str:
    assert rc == 2 and err.count("\n") == 1 and err.startswith("error: "), err
    return err


def test_unknown_dataset_names_the_choices(tmp_path, capsys):
    err = one_error(*convert(capsys, "postdam", tmp_path, tmp_path / "out")[::2])
    assert "'postdam'" in err and "potsdam, vaihingen" in err


@pytest.mark.parametrize("flag", ["--clip-size", "--stride"])
def test_a_non_positive_size_is_refused(tmp_path, capsys, flag):
    rc = gkd(["convert-isprs", "--dataset", "potsdam", "--archives", str(tmp_path), "--out", str(tmp_path / "o"),
              flag, "0"])
    err = one_error(rc, capsys.readouterr().err)
    assert flag in err and "got 0" in err


def test_missing_archives_folder(tmp_path, capsys):
    err = one_error(*convert(capsys, "potsdam", tmp_path / "nowhere", tmp_path / "out")[::2])
    assert "nowhere" in err and "not found" in err and "2_Ortho_RGB.zip" in err


@pytest.mark.parametrize("dataset,expected", [
    ("potsdam", ["2_Ortho_RGB.zip", "3_Ortho_IRRG.zip", "5_Labels_all_noBoundary.zip",
                 "top_potsdam_<i>_<j>_label_noBoundary.tif"]),
    ("vaihingen", ["ISPRS_semantic_labeling_Vaihingen.zip", "top/top_mosaic_09cm_area<k>.tif",
                   "ISPRS_semantic_labeling_Vaihingen_ground_truth_eroded_COMPLETE.zip"])])
def test_an_empty_folder_names_the_official_archives(tmp_path, capsys, dataset, expected):
    (tmp_path / "archives").mkdir()
    err = one_error(*convert(capsys, dataset, tmp_path / "archives", tmp_path / "out")[::2])
    assert all(e in err for e in expected), err
    no_leftovers(tmp_path, tmp_path / "out")


def test_full_boundary_labels_are_not_taken_for_the_eroded_ones(tmp_path, capsys):
    official_potsdam(tmp_path / "archives", labels="full")
    err = one_error(*convert(capsys, "potsdam", tmp_path / "archives", tmp_path / "out")[::2])
    assert "no potsdam eroded label tiles" in err and "5_Labels_all_noBoundary.zip" in err
    assert "top_potsdam_" in err and "_label.tif" in err  # what was found instead


def test_vaihingen_images_outside_top_are_not_taken(tmp_path, capsys):
    official_vaihingen(tmp_path / "archives", zipped=False)
    (tmp_path / "archives" / "top").rename(tmp_path / "archives" / "images")
    err = one_error(*convert(capsys, "vaihingen", tmp_path / "archives", tmp_path / "out")[::2])
    assert "no vaihingen IRRG image tiles" in err and "top/top_mosaic_09cm_area<k>.tif" in err


def test_a_missing_tile_is_named(tmp_path, capsys):
    official_potsdam(tmp_path / "archives", drop=("7_13", "IRRG"))
    err = one_error(*convert(capsys, "potsdam", tmp_path / "archives", tmp_path / "out")[::2])
    assert "1 of the 114" in err and "top_potsdam_7_13_IRRG.tif (3_Ortho_IRRG.zip)" in err
    no_leftovers(tmp_path, tmp_path / "out")


def test_a_non_empty_out_is_never_overwritten(tmp_path, capsys):
    (tmp_path / "archives").mkdir()
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "mine.txt").write_text("keep")
    err = one_error(*convert(capsys, "potsdam", tmp_path / "archives", tmp_path / "out")[::2])
    assert str(tmp_path / "out") in err and "not an empty folder" in err
    assert [p.name for p in (tmp_path / "out").iterdir()] == ["mine.txt"]


def test_an_empty_out_folder_is_filled(tmp_path, capsys):
    tiles = official_vaihingen(tmp_path / "archives")
    (tmp_path / "vaihingen").mkdir()
    rc, _, err = convert(capsys, "vaihingen", tmp_path / "archives", tmp_path / "vaihingen")
    assert rc == 0, err
    assert len(get_reader("vaihingen_irrg").samples(tmp_path / "vaihingen", "train")) == sum(
        len(expected_boxes(*vaihingen_size(t))) for t in tiles if t in isprs.VAIHINGEN_TRAIN_TILES)


def test_a_tile_smaller_than_the_clip_stops_and_leaves_nothing(tmp_path, capsys):
    official_potsdam(tmp_path / "archives")
    rc = gkd(["convert-isprs", "--dataset", "potsdam", "--archives", str(tmp_path / "archives"),
              "--out", str(tmp_path / "out"), "--clip-size", "64"])
    err = one_error(rc, capsys.readouterr().err)
    assert "36×40 px, smaller than --clip-size 64" in err and "top_potsdam_2_10_label_noBoundary.tif" in err
    no_leftovers(tmp_path, tmp_path / "out")


def test_an_image_of_another_size_than_its_label_stops_and_leaves_nothing(tmp_path, capsys):
    tiles = make_tiles(POTSDAM_TILES, lambda t: POTSDAM_SIZE, seed=3)
    tiles["3_10"]["IRRG"] = tiles["3_10"]["IRRG"][:, :-1]
    official_potsdam(tmp_path / "archives", tiles=tiles)
    err = one_error(*convert(capsys, "potsdam", tmp_path / "archives", tmp_path / "out")[::2])
    assert "top_potsdam_3_10_IRRG.tif: 35×40 px" in err and "is 36×40 px" in err
    no_leftovers(tmp_path, tmp_path / "out")


def test_a_broken_zip_is_named(tmp_path, capsys):
    (tmp_path / "archives").mkdir()
    (tmp_path / "archives" / "2_Ortho_RGB.zip").write_bytes(b"not a zip")
    err = one_error(*convert(capsys, "potsdam", tmp_path / "archives", tmp_path / "out")[::2])
    assert "2_Ortho_RGB.zip: not a readable zip archive" in err


def test_two_copies_of_a_tile_are_ambiguous(tmp_path, capsys):
    official_potsdam(tmp_path / "archives", zipped=False)
    copy = tmp_path / "archives" / "copy" / "top_potsdam_2_10_RGB.tif"
    copy.parent.mkdir()
    copy.write_bytes((tmp_path / "archives" / "2_Ortho_RGB" / "top_potsdam_2_10_RGB.tif").read_bytes())
    err = one_error(*convert(capsys, "potsdam", tmp_path / "archives", tmp_path / "out")[::2])
    assert "tile 2_10 (RGB image) found twice" in err and "keep one" in err


def test_a_zip_inside_a_zip_asks_to_extract_it(tmp_path, capsys):
    official_potsdam(tmp_path / "inner")
    (tmp_path / "archives").mkdir()
    with zipfile.ZipFile(tmp_path / "archives" / "Potsdam.zip", "w") as zf:
        for p in sorted((tmp_path / "inner").glob("*.zip")):
            zf.write(p, f"Potsdam/{p.name}")
    err = one_error(*convert(capsys, "potsdam", tmp_path / "archives", tmp_path / "out")[::2])
    assert "extract them first" in err and "Potsdam.zip:Potsdam/2_Ortho_RGB.zip" in err
