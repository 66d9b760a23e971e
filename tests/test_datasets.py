"""Real-dataset readers and the `real` adapter, on tiny trees in the exact official layouts."""
from __future__ import annotations

import dataclasses
import json
import logging
import shutil
import warnings
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from gkd.config import BenchmarkConfig, ConfigError
from gkd.data.adapters import ADAPTERS
from gkd.data import labelmaps as lm
from gkd.data import real as real_mod
from gkd.data.readers import DataError, READERS, get_reader, read_rgb

import fixtures_datasets as fx
from fixtures_datasets import build_gta2city_fixture  # noqa: F401  (exposed for the end-to-end run)

ALL_READERS = {"gta5", "synthia", "urbansyn", "cityscapes", "bdd100k", "mapillary", "acdc_night", "acdc_snow",
               "acdc_fog", "acdc_rain", "potsdam_rgb", "potsdam_irrg", "vaihingen_irrg"}


def bench(root, source, targets, size=16, train_crops=None, **kw) -> BenchmarkConfig:
    """A real benchmark preset; ``train_crops`` works before and after the field joins BenchmarkConfig."""
    has_crops = "train_crops" in {f.name for f in dataclasses.fields(BenchmarkConfig)}
    if train_crops is not None and has_crops:
        kw["train_crops"] = train_crops
    b = BenchmarkConfig(adapter="real", image_size=size, patch_size=16, source=source, targets=targets,
                        root=str(root), **kw)
    if train_crops is not None and not has_crops:
        object.__setattr__(b, "train_crops", train_crops)
    return b


def check_against(root: Path, expected: fx.Expected) -> int:
    """Every reader's samples equal the fixture's images, and every label equals the expected array."""
    n = 0
    for name, splits in expected.items():
        reader = get_reader(name)
        base = root / reader.folder
        for split, labels in splits.items():
            samples = reader.samples(base, split)
            assert [s.image.relative_to(base).as_posix() for s in samples] == sorted(labels), (name, split)
            assert len({s.name for s in samples}) == len(samples)
            for s in samples:
                assert s.name.startswith(name) and "/" not in s.name
                got = reader.read_label(s.label)
                want = labels[s.image.relative_to(base).as_posix()]
                assert got.dtype == np.uint8 and got.shape == want.shape
                np.testing.assert_array_equal(got, want, err_msg=str(s.label))
                image = reader.read_image(s.image)
                assert image.dtype == np.uint8 and image.shape == (*want.shape, 3)
                n += 1
    return n


# --- tables ----------------------------------------------------------------------------------------------
def test_tables_follow_datasets_md():
    t = lm.CITYSCAPES_ID_TO_TRAINID
    assert t.shape == (256,) and t.dtype == np.uint8
    assert [t[i] for i in (7, 8, 11, 17, 23, 26, 31, 33)] == [0, 1, 2, 5, 10, 13, 16, 18]
    assert all(t[i] == 255 for i in (0, 1, 6, 9, 10, 14, 15, 16, 18, 29, 30, 34, 200, 255))
    assert sorted(t[t != 255].tolist()) == list(range(19))
    s = lm.SYNTHIA_ID_TO_TRAINID
    assert (s[3], s[4], s[2], s[21], s[10], s[17], s[12], s[11]) == (0, 1, 2, 3, 11, 12, 17, 18)
    assert all(s[i] == 255 for i in (0, 13, 14, 22))
    assert len(lm.CITYSCAPES_CLASSES) == len(lm.CITYSCAPES_PALETTE) == 19
    assert lm.CITYSCAPES_PALETTE[13] == [0, 0, 142] and lm.CITYSCAPES_CLASSES[6] == "traffic light"


def test_mapillary_table_is_gkds_rule_applied_to_the_v12_names():
    assert len(lm.MAPILLARY_V12_NAMES) == 66 and lm.MAPILLARY_V12_NAMES[65] == "Unlabeled"
    derived = {i: lm.mapillary_rule(n) for i, n in enumerate(lm.MAPILLARY_V12_NAMES)}
    assert {i: v for i, v in derived.items() if v != 255} == fx.MAPILLARY_ID2TRAIN
    m = lm.MAPILLARY_V12_TO_TRAINID
    assert m[46] == 7 and m[63] == 255 and m[64] == 255 and m[12] == 255  # sign frame, car mount, ego, rail track


def test_isprs_colours_bgr_pitfall_and_reduce_zero_label():
    # The converter's colour list is BGR: reversing each entry gives the RGB colour of class value-1.
    for value, bgr in enumerate(lm.ISPRS_CONVERTER_BGR_COLOR_MAP[1:], start=1):
        assert list(bgr[::-1]) == lm.ISPRS_PALETTE[value - 1]
    assert lm.ISPRS_PALETTE[1] == [0, 0, 255] and lm.ISPRS_CLASSES[1] == "building"   # blue = building
    assert lm.ISPRS_PALETTE[5] == [255, 0, 0] and lm.ISPRS_CLASSES[5] == "clutter"    # red = clutter
    rgb = np.array([[[255, 255, 255], [0, 0, 255], [0, 255, 255], [0, 255, 0], [255, 255, 0], [255, 0, 0],
                     [0, 0, 0], [1, 2, 3]]], np.uint8)
    assert lm.isprs_colours_to_values(rgb).tolist() == [[1, 2, 3, 4, 5, 6, 0, 0]]
    assert lm.lookup(lm.REDUCE_ZERO_LABEL, np.arange(7)).tolist() == [255, 0, 1, 2, 3, 4, 5]
    with pytest.raises(ValueError):
        lm.lookup(lm.REDUCE_ZERO_LABEL, np.array([256]))


def test_cityscapes_table_matches_cityscapesscripts():
    from cityscapesscripts.helpers import labels  # in the test extra, so CI runs this check (never skips)
    for label in labels.labels:
        if label.id >= 0:
            want = 255 if label.trainId in (255, -1) else label.trainId
            assert lm.CITYSCAPES_ID_TO_TRAINID[label.id] == want, label.name


# --- registry -------------------------------------------------------------------------------------------
def test_registry_and_reader_metadata():
    assert set(READERS) == ALL_READERS
    with pytest.raises(ConfigError, match="valid choices: .*acdc_fog.*vaihingen_irrg"):
        get_reader("gta")
    folders = {n: r.folder for n, r in READERS.items()}
    assert folders["gta5"] == "GTA5" and folders["cityscapes"] == "cityscapes" and folders["acdc_fog"] == "acdc"
    assert folders["synthia"] == "SYNTHIA_RAND_CITYSCAPES/RAND_CITYSCAPES" and folders["potsdam_irrg"] == "potsdam/IRRG"
    for name, r in READERS.items():
        isprs = name.startswith(("potsdam", "vaihingen"))
        assert r.classes == (lm.ISPRS_CLASSES if isprs else lm.CITYSCAPES_CLASSES)
        assert len(r.palette) == len(r.classes)


# --- every reader, pixel by pixel -------------------------------------------------------------------------
@pytest.mark.parametrize("dataset", sorted(fx.BUILDERS))
def test_reader_maps_labels_pixel_by_pixel(tmp_path, dataset):
    root, expected = fx.BUILDERS[dataset](tmp_path)
    assert check_against(root, expected) >= 3


def test_isprs_colour_coded_labels_tif_and_png(tmp_path):
    root, expected = fx.build_isprs_colour(tmp_path)
    assert check_against(root, expected) == 3
    assert {p.suffix for p in (root / "potsdam/RGB/ann_dir").rglob("*")} >= {".tif", ".png"}


def test_isprs_irrg_keeps_channel_order(tmp_path):
    root, _ = fx.build_potsdam(tmp_path)
    name = "2_10_0_0_512_512.png"
    reader = get_reader("potsdam_irrg")
    got = reader.read_image(root / "potsdam/IRRG/img_dir/train" / name)
    np.testing.assert_array_equal(got, np.asarray(Image.open(root / "potsdam/IRRG/img_dir/train" / name)))
    rgb = read_rgb(root / "potsdam/RGB/img_dir/train" / name)
    np.testing.assert_array_equal(got[..., 1:], rgb[..., :2])  # IR, R, G: R and G sit at 1 and 2


# --- SYNTHIA's 16-bit labels -------------------------------------------------------------------------------
def test_synthia_png16_decoders_agree_on_every_filter(tmp_path):
    from gkd.data import synthia
    rng = np.random.default_rng(0)
    raw = rng.integers(0, 65536, (9, 13, 3)).astype(np.uint16)
    path = tmp_path / "x.png"
    fx.write_png16(path, raw)
    np.testing.assert_array_equal(synthia.decode_png(path), raw)
    grey = raw[..., 0]
    fx.write_png16(tmp_path / "g.png", grey, filters=(4, 3, 1))
    np.testing.assert_array_equal(synthia.decode_png(tmp_path / "g.png")[..., 0], grey)
    # Pillow keeps only the high byte: exactly the pitfall the reader avoids.
    assert not np.array_equal(np.asarray(Image.open(path))[..., 0], raw[..., 0])
    try:
        import cv2
    except ImportError:
        return
    np.testing.assert_array_equal(synthia.first_channel(path), raw[..., 0])
    cv2.imwrite(str(tmp_path / "cv.png"), raw[..., ::-1].copy())  # OpenCV writes BGR arrays as RGB files
    np.testing.assert_array_equal(synthia.decode_png(tmp_path / "cv.png"), raw)


def test_synthia_reader_without_opencv(tmp_path, monkeypatch):
    import builtins
    real_import = builtins.__import__

    def no_cv2(name, *args, **kwargs):
        if name == "cv2":
            raise ImportError("no cv2")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_cv2)
    root, expected = fx.build_synthia(tmp_path, n=2)
    assert check_against(root, expected) == 2


def test_synthia_converted_trainids_fallback(tmp_path):
    root, expected = fx.build_synthia(tmp_path, n=2)
    labels = root / "SYNTHIA_RAND_CITYSCAPES/RAND_CITYSCAPES/GT/LABELS"
    want = expected["synthia"]["train"]["RGB/0000000.png"]
    (labels / "0000000.png").unlink()
    fx.save_l(labels / "0000000_labelTrainIds.png", want)
    assert check_against(root, expected) == 2


# --- fallbacks and layout variants ---------------------------------------------------------------------------
def test_converted_label_fallbacks(tmp_path):
    root, expected = fx.build_cityscapes(tmp_path)
    for lab in (root / "cityscapes/gtFine/val").rglob("*_gtFine_labelIds.png"):
        ids = np.asarray(Image.open(lab))
        fx.save_l(lab.with_name(lab.name.replace("labelIds", "labelTrainIds")), fx.mapped(ids, fx.CITYSCAPES_ID2TRAIN))
        lab.unlink()
    _, more = fx.build_gta5(tmp_path, n=2)
    gta_label = tmp_path / "GTA5/labels/00001.png"
    fx.save_l(tmp_path / "GTA5/labels/00001_labelTrainIds.png", more["gta5"]["train"]["images/00001.png"])
    gta_label.unlink()
    _, acdc = fx.build_acdc(tmp_path)
    for lab in (tmp_path / "acdc/gt/snow").rglob("*_gt_labelTrainIds.png"):
        lab.unlink()  # only the labelIds remain: mapped with the Cityscapes table
    assert check_against(root, {**expected, **more, **acdc}) > 20


def test_urbansyn_accepts_gkd_renamed_labels(tmp_path):
    root, expected = fx.build_urbansyn(tmp_path)
    ss = root / "UrbanSyn/ss"
    (ss / "ss_0002.png").rename(ss / "rgb_0002.png")
    assert check_against(root, expected) == 3


def test_mapillary_v20_archive_layout_and_config_check(tmp_path):
    root, expected = fx.build_mapillary(tmp_path)
    base = root / "mapillary"
    for split in ("training", "validation"):
        (base / split / "v1.2").mkdir()
        (base / split / "labels").rename(base / split / "v1.2" / "labels")
    (base / "config.json").rename(base / "config_v1.2.json")
    assert check_against(root, expected) == 5
    config = fx.mapillary_config()
    config["labels"].append({"readable": "Pothole 2"})
    (base / "config_v1.2.json").write_text(json.dumps(config))
    with pytest.raises(DataError, match=r"config_v1\.2\.json: expected the 66 Mapillary Vistas v1\.2 labels"):
        get_reader("mapillary").samples(base, "val")


# --- official splits -----------------------------------------------------------------------------------------
def test_official_splits(tmp_path):
    assert get_reader("gta5").splits == ("train",) and get_reader("gta5").eval_split is None
    assert get_reader("synthia").splits == ("train",) and get_reader("urbansyn").splits == ("train",)
    for name in ALL_READERS - {"gta5", "synthia", "urbansyn"}:
        assert get_reader(name).splits == ("train", "val") and get_reader(name).eval_split == "val"
    fx.build_gta5(tmp_path)
    with pytest.raises(ConfigError, match="valid choices: train"):
        get_reader("gta5").samples(tmp_path / "GTA5", "val")

    fx.build_cityscapes(tmp_path)
    cs = get_reader("cityscapes")
    val_cities = {s.image.parent.name for s in cs.samples(tmp_path / "cityscapes", "val")}
    assert val_cities == {"frankfurt", "lindau", "munster"}
    assert {s.image.parent.name for s in cs.samples(tmp_path / "cityscapes", "train")} <= set(fx._CITIES["train"])
    fx.build_bdd100k(tmp_path)
    assert all(s.image.parent == tmp_path / "bdd100k/images/10k/val" and s.label.parent.name == "val"
               for s in get_reader("bdd100k").samples(tmp_path / "bdd100k", "val"))
    fx.build_mapillary(tmp_path)
    mapillary_val = get_reader("mapillary").samples(tmp_path / "mapillary", "val")
    assert all(s.image.parts[-3] == "validation" for s in mapillary_val)
    fx.build_acdc(tmp_path)
    for cond in fx.ACDC_CONDITIONS:
        samples = get_reader(f"acdc_{cond}").samples(tmp_path / "acdc", "val")
        assert len(samples) == 2 and all(s.image.parts[-4:-2] == (cond, "val") for s in samples)
        assert all(s.label.name.endswith("_gt_labelTrainIds.png") for s in samples)


def test_isprs_tile_split_tables_and_membership(tmp_path):
    from gkd.data import isprs
    assert len(isprs.POTSDAM_TRAIN_TILES) == 24 and len(isprs.POTSDAM_VAL_TILES) == 14
    assert len(isprs.VAIHINGEN_TRAIN_TILES) == 16 and len(isprs.VAIHINGEN_VAL_TILES) == 17
    assert not isprs.POTSDAM_TRAIN_TILES & isprs.POTSDAM_VAL_TILES
    assert not isprs.VAIHINGEN_TRAIN_TILES & isprs.VAIHINGEN_VAL_TILES and "area9" not in isprs.VAIHINGEN_VAL_TILES
    root, _ = fx.build_potsdam(tmp_path)
    reader = get_reader("potsdam_rgb")
    for split, tiles in (("train", isprs.POTSDAM_TRAIN_TILES), ("val", isprs.POTSDAM_VAL_TILES)):
        samples = reader.samples(root / "potsdam/RGB", split)
        assert samples and all(reader.tile_of(s.image.stem) in tiles for s in samples)
    assert get_reader("vaihingen_irrg").tile_of("area24_0_0_512_512") == "area24"
    assert reader.official_split("6_7") == "train" and reader.official_split("7_13") == "val"
    # a val tile's patch inside train/ would leak evaluation data into training
    base = root / "potsdam/RGB"
    for d in ("img_dir", "ann_dir"):
        shutil.copy(base / d / "val/7_13_0_0_512_512.png", base / d / "train/7_13_0_0_512_512.png")
    with pytest.raises(DataError, match=r"7_13_0_0_512_512\.png: a patch of tile 7_13 in the train split.*val"):
        reader.samples(base, "train")


def test_count_differs_from_release_is_a_warning(tmp_path, caplog):
    root, _ = fx.build_cityscapes(tmp_path)
    with caplog.at_level(logging.WARNING, logger="gkd.data"):
        assert len(get_reader("cityscapes").samples(root / "cityscapes", "val")) == 3
    assert "cityscapes val: found 3 images; the official release has 500" in caplog.text


# --- bad data --------------------------------------------------------------------------------------------------
def test_bad_layouts_raise_naming_the_path(tmp_path):
    cs = get_reader("cityscapes")
    with pytest.raises(DataError, match=r"dataset root .*nowhere not found for 'cityscapes' "
                                        r"\(expected cityscapes/leftImg8bit"):
        cs.samples(tmp_path / "nowhere", "val")
    root, _ = fx.build_cityscapes(tmp_path, counts={"train": 2})
    with pytest.raises(DataError, match=r"image folder .*leftImg8bit/val not found"):
        cs.samples(root / "cityscapes", "val")
    label = next((root / "cityscapes/gtFine/train").rglob("*_gtFine_labelIds.png"))
    label.unlink()
    with pytest.raises(DataError, match=r"_leftImg8bit\.png: no label; expected .*" + label.name):
        cs.samples(root / "cityscapes", "train")
    samples, missing = cs.scan(root / "cityscapes", "train")
    assert len(samples) == 1 and missing[0][1] == label


def test_unreadable_image_and_bad_label_values(tmp_path):
    root, _ = fx.build_gta5(tmp_path, n=3)
    gta = get_reader("gta5")
    image = root / "GTA5/images/00002.png"
    fx.truncate(image)
    with pytest.raises(DataError, match=r"00002\.png: unreadable image"):
        gta.read_image(image)
    label = root / "GTA5/labels/00003.png"
    ids = np.asarray(Image.open(label)).copy()
    ids[0, :3] = [34, 99, 7]
    fx.save_palette(label, ids)
    with pytest.raises(DataError, match=r"00003\.png: label values \[34, 99\] outside the known encoding "
                                        r"\(expected Cityscapes label ids 0\.\.33\)"):
        gta.read_label(label)
    fx.save_rgb(label, np.zeros((*ids.shape, 3), np.uint8))  # a colour picture instead of the id map
    with pytest.raises(DataError, match=r"00003\.png: expected a single-channel label image.*mode RGB"):
        gta.read_label(label)
    bad = {"bdd100k": (fx.build_bdd100k, "labels/sem_seg/masks/val", 19, "trainIds 0..18 or 255"),
           "mapillary": (fx.build_mapillary, "validation/labels", 66, "v1.2 ids 0..65"),
           "potsdam_rgb": (fx.build_potsdam, "ann_dir/val", 7, "values 0..6")}
    for name, (build, sub, value, what) in bad.items():
        build(tmp_path)
        reader = get_reader(name)
        path = sorted((tmp_path / reader.folder / sub).glob("*.png"))[0]
        arr = np.asarray(Image.open(path)).copy()
        arr[0, 0] = value
        (fx.save_palette if name == "mapillary" else fx.save_l)(path, arr)
        with pytest.raises(DataError, match=rf"{path.name}: label values \[{value}\] .*{what}"):
            reader.read_label(path)
    root, _ = fx.build_synthia(tmp_path, n=1)
    path = root / "SYNTHIA_RAND_CITYSCAPES/RAND_CITYSCAPES/GT/LABELS/0000000.png"
    fx.write_png16(path, np.full((4, 5, 3), 300, np.uint16))
    with pytest.raises(DataError, match=r"0000000\.png: label values \[300\] .*SYNTHIA class ids 0\.\.22"):
        get_reader("synthia").read_label(path)


def test_large_tiles_open_but_bombs_do_not(tmp_path):
    import struct
    import zlib
    tile = tmp_path / "top_potsdam_2_10_RGB.png"
    Image.new("L", (6000, 6000)).save(tile)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no DecompressionBombWarning either
        assert read_rgb(tile).shape == (6000, 6000, 3)
    assert Image.MAX_IMAGE_PIXELS >= 6000 * 6000
    ihdr = struct.pack(">IIBBBBB", 40000, 40000, 8, 0, 0, 0, 0)

    def chunk(kind, body):
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))
    bomb = tmp_path / "bomb.png"
    bomb.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IEND", b""))
    with pytest.raises(DataError, match=r"bomb\.png: unreadable image \(DecompressionBombError"):
        read_rgb(bomb)


# --- the `real` adapter -----------------------------------------------------------------------------------------
def collect(records):
    out = {}
    for domain, split, count, recs in records:
        recs = list(recs)
        assert len(recs) == count, (domain, split)
        out[(domain, split)] = recs
    return out


def check_records(out, size, k):
    for (domain, split), recs in out.items():
        for name, image, label in recs:
            assert image.dtype == np.uint8 and label.dtype == np.uint8
            assert set(np.unique(label).tolist()) <= set(range(k)) | {255}
            if split == "train":
                assert image.shape == (size, size, 3) and label.shape == (size, size)
                assert name.rsplit("_c", 1)[1].isdigit()
            else:  # evaluation splits (tests/test_eval_protocol.py): image at its test scale, label as shipped
                assert min(image.shape[:2]) >= size
                assert image.shape[:2] == real_mod.eval_image_size(*label.shape, real_mod.EVAL_SCALES.get(domain), size)


def test_real_adapter_gta_to_city_bdd_mapillary(tmp_path):
    root = build_gta2city_fixture(tmp_path)
    info, records = ADAPTERS["real"](bench(root, "gta5", ["cityscapes", "bdd100k", "mapillary"], size=32,
                                           target_images=3), 0, {})
    assert info == {"classes": lm.CITYSCAPES_CLASSES, "palette": lm.CITYSCAPES_PALETTE, "source": "gta5"}
    out = collect(records)
    assert {k: len(v) for k, v in out.items()} == {("gta5", "train"): 8, ("cityscapes", "test"): 3,
                                                   ("bdd100k", "test"): 3, ("mapillary", "test"): 3}
    check_records(out, 32, 19)
    assert out[("cityscapes", "test")][0][1].shape == (32, 64, 3)   # 96×48 into the box 64×32, aspect kept
    assert out[("cityscapes", "test")][0][2].shape == (48, 96)       # the label keeps its resolution
    assert out[("bdd100k", "test")][0][1].shape == (45, 80, 3)       # 80×45 fits the box 80×45 as it is
    assert out[("gta5", "train")][0][0] == "gta5_00001_c0"
    assert real_mod.real_adapter.last_skipped == []


def test_real_adapter_train_crops_and_resize(tmp_path):
    root, expected = fx.build_gta5(tmp_path, n=2, size=(40, 24))
    out = collect(ADAPTERS["real"](bench(root, "gta5", [], size=12, train_crops=3), 0, {})[1])
    recs = out[("gta5", "train")]
    assert [r[0] for r in recs] == [f"gta5_0000{i}_c{k}" for i in (1, 2) for k in range(3)]
    full_image, full_label = real_mod.resize_short(
        read_rgb(root / "GTA5/images/00001.png"), expected["gta5"]["train"]["images/00001.png"], 12)
    assert full_label.shape == (12, 20)
    for k, offset in enumerate((0, 4, 8)):  # ends and centre of the 20-pixel long side
        np.testing.assert_array_equal(recs[k][2], full_label[:, offset:offset + 12])
        np.testing.assert_array_equal(recs[k][1], full_image[:, offset:offset + 12])
    assert real_mod.crop_offsets(20, 12, 1) == [4] and real_mod.crop_offsets(20, 12, 2) == [0, 8]
    image, label = real_mod.resize_short(np.zeros((30, 10, 3), np.uint8), np.zeros((30, 10), np.uint8), 5)
    assert label.shape == (15, 5) and image.shape == (15, 5, 3)


def test_real_adapter_cityscapes_to_acdc(tmp_path):
    fx.build_cityscapes(tmp_path)
    fx.build_acdc(tmp_path)
    targets = ["acdc_night", "acdc_snow", "acdc_fog", "acdc_rain"]
    info, records = ADAPTERS["real"](bench(tmp_path, "cityscapes", targets, size=16, val_images=2), 0, {})
    out = collect(records)
    assert {k: len(v) for k, v in out.items()} == {
        ("cityscapes", "train"): 3, ("cityscapes", "val"): 2, **{(t, "test"): 2 for t in targets}}
    check_records(out, 16, 19)
    assert out[("cityscapes", "val")][0][1].shape == (16, 32, 3)


def test_real_adapter_potsdam_rgb_to_irrg_and_vaihingen(tmp_path):
    fx.build_potsdam(tmp_path)
    fx.build_vaihingen(tmp_path)
    info, records = ADAPTERS["real"](bench(tmp_path, "potsdam_rgb", ["potsdam_irrg", "vaihingen_irrg"], size=16), 0, {})
    assert info == {"classes": lm.ISPRS_CLASSES, "palette": lm.ISPRS_PALETTE, "source": "potsdam_rgb"}
    out = collect(records)
    assert {k: len(v) for k, v in out.items()} == {("potsdam_rgb", "train"): 4, ("potsdam_rgb", "val"): 4,
                                                   ("potsdam_irrg", "test"): 4, ("vaihingen_irrg", "test"): 4}
    check_records(out, 16, 6)


def test_real_adapter_multi_source_caps(tmp_path):
    fx.build_gta5(tmp_path, n=3)
    fx.build_synthia(tmp_path, n=2)
    fx.build_urbansyn(tmp_path, n=2)
    fx.build_cityscapes(tmp_path)
    out = collect(ADAPTERS["real"](bench(tmp_path, "gta5+synthia+urbansyn", ["cityscapes"], train_images=4,
                                         target_images=1), 0, {})[1])
    names = [r[0] for r in out[("gta5_synthia_urbansyn", "train")]]
    assert names == ["gta5_00001_c0", "gta5_00002_c0", "synthia_0000000_c0", "urbansyn_rgb_0001_c0"]
    assert len(out[("cityscapes", "test")]) == 1 and ("gta5_synthia_urbansyn", "val") not in out


def test_real_adapter_config_errors(tmp_path):
    fx.build_potsdam(tmp_path)
    fx.build_cityscapes(tmp_path)
    with pytest.raises(ConfigError, match="mixes class sets"):
        ADAPTERS["real"](bench(tmp_path, "potsdam_rgb", ["cityscapes"]), 0, {})
    with pytest.raises(ConfigError, match="'gta5' has no evaluation split"):
        ADAPTERS["real"](bench(tmp_path, "cityscapes", ["gta5"]), 0, {})
    with pytest.raises(ConfigError, match=r"dataset 'cityscapes': no folder given; set `datasets: \{cityscapes: "):
        ADAPTERS["real"](BenchmarkConfig(adapter="real", image_size=8, patch_size=8, source="cityscapes",
                                         targets=[]), 0, {})
    with pytest.raises(ConfigError, match="unknown dataset reader 'gta'"):
        ADAPTERS["real"](bench(tmp_path, "gta", []), 0, {})
    with pytest.raises(DataError, match=r"dataset root .*GTA5 not found"):  # raised before any record is made
        ADAPTERS["real"](bench(tmp_path, "gta5", ["cityscapes"]), 0, {})


def _break_gta(root: Path) -> None:
    fx.truncate(root / "GTA5/images/00002.png")
    label = root / "GTA5/labels/00003.png"
    ids = np.asarray(Image.open(label)).copy()
    ids[0, 0] = 77
    fx.save_palette(label, ids)
    (root / "GTA5/labels/00004.png").unlink()
    fx.save_palette(root / "GTA5/labels/00005.png", np.zeros((5, 5), np.uint8))  # wrong size


def test_real_adapter_bad_data_raises_by_default(tmp_path):
    fx.build_gta5(tmp_path, n=6)
    fx.build_cityscapes(tmp_path)
    _break_gta(tmp_path)
    with pytest.raises(DataError, match=r"00004\.png: no label; expected .*GTA5/labels/00004\.png"):
        ADAPTERS["real"](bench(tmp_path, "gta5", ["cityscapes"]), 0, {})
    (tmp_path / "GTA5/images/00004.png").unlink()
    info, records = ADAPTERS["real"](bench(tmp_path, "gta5", ["cityscapes"]), 0, {})
    domain, split, count, recs = next(records)
    with pytest.raises(DataError, match=r"00002\.png: unreadable image"):
        list(recs)


def test_real_adapter_skip_bad_skips_and_reports(tmp_path, caplog):
    fx.build_gta5(tmp_path, n=6)
    fx.build_cityscapes(tmp_path)
    _break_gta(tmp_path)
    with caplog.at_level(logging.WARNING, logger="gkd.data"):
        info, records = ADAPTERS["real"](bench(tmp_path, "gta5", ["cityscapes"], skip_bad=True), 0, {})
        out = collect(records)
    assert [r[0] for r in out[("gta5", "train")]] == ["gta5_00001_c0", "gta5_00006_c0"]
    skipped = real_mod.real_adapter.last_skipped
    assert [(s["domain"], s["split"], Path(s["file"]).name) for s in skipped] == [
        ("gta5", "train", "00004.png"), ("gta5", "train", "00002.png"), ("gta5", "train", "00003.png"),
        ("gta5", "train", "00005.png")]
    reasons = " | ".join(s["reason"] for s in skipped)
    for reason in ("no label", "unreadable image", "[77]", "expected equal sizes"):
        assert reason in reasons
    assert "gta5/train: skipped 4 bad samples" in caplog.text
    assert len(out[("cityscapes", "test")]) == 3


def test_per_dataset_folders_override_the_root(tmp_path):
    """`datasets:` in params places each dataset anywhere; the others are still found under the root."""
    fx.build_cityscapes(tmp_path / "elsewhere")
    fx.build_acdc(tmp_path / "root")
    moved = {"cityscapes": str(tmp_path / "elsewhere" / "cityscapes")}
    out = collect(ADAPTERS["real"](bench(tmp_path / "root", "cityscapes", ["acdc_fog"], size=16), 0, moved)[1])
    assert len(out[("cityscapes", "train")]) == 3 and len(out[("acdc_fog", "test")]) == 2
    with pytest.raises(DataError, match="cityscapes"):  # without the entry, <root>/cityscapes does not exist
        ADAPTERS["real"](bench(tmp_path / "root", "cityscapes", ["acdc_fog"], size=16), 0, {})


def test_datasets_entries_are_validated_before_any_work(tmp_path):
    """At plan time (gkd check, gkd dag, the Snakefile's parse: gkd.validate), also on `synthetic`, where the
    entry would be unused — the prepare stage of `synthetic` imports no reader to check it with."""
    import yaml
    from gkd import validate
    raw = yaml.safe_load(open("params.yaml"))
    assert validate.from_dict({**raw, "datasets": {"gta5": "/data/GTA5"}}).datasets == {"gta5": "/data/GTA5"}
    for entry, message in [({"cityscape": "/data/cityscapes"}, "unknown dataset .*'cityscape'.*valid choices: .*cityscapes"),
                           ({"gta5": ""}, "datasets.gta5: expected the dataset's folder")]:
        with pytest.raises(ConfigError, match=message):
            validate.from_dict({**raw, "datasets": entry})
