"""Stage 1a on real benchmarks: a benchmark's `generic_folder` (the paper: ImageNet's train folder) becomes
the prepared `generic/train` and `generic/val` splits — unlabelled (all 255), short side image_size and
centre-cropped, an even spread of the sorted listing under the caps; without it, distill says that it
skips 1a and why; a bad image is one DataError naming the file, and `gkd check-data` finds it first."""
from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest
import yaml
from PIL import Image

import fixtures_datasets as fx
from conftest import tiny_params
from gkd import config
from gkd.cli import main as gkd
from gkd.config import BenchmarkConfig, ConfigError
from gkd.data import real
from gkd.data.adapters import ADAPTERS
from gkd.data.prepared import BenchmarkMeta
from gkd.data.readers import DataError
from gkd.stages import distill

SIZE = 16
TARGETS = ["cityscapes", "bdd100k", "mapillary"]
# the generic folder: nested class folders as ImageNet's, mixed suffixes and cases, landscape and portrait
IMAGES = {"n01/n01_0001.JPEG": (40, 24), "n01/n01_0002.jpg": (24, 40), "n01/extra/n01_0003.png": (32, 32),
          "n02/n02_0001.jpeg": (50, 20), "n02/n02_0002.PNG": (20, 30), "n03/n03_0001.jpg": (36, 18),
          "n03/n03_0002.png": (18, 36), "top.png": (30, 20)}
SORTED = sorted(IMAGES)  # n01/extra/..., n01/n01_0001, n01/n01_0002, n02/..., n03/..., top.png


def name(rel: str) -> str:
    return "generic_" + rel.rsplit(".", 1)[0].replace("/", "_")


def build_image_folder(folder: Path) -> Path:
    rng = np.random.default_rng(5)
    for rel, (w, h) in IMAGES.items():
        path = folder / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        pixels = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
        image = Image.fromarray(pixels)
        if rel.endswith("0002.jpg"):
            image = image.convert("L")  # a greyscale JPEG, as ImageNet has a few
        image.save(path, format="JPEG" if rel.lower().endswith((".jpg", ".jpeg")) else "PNG")
    (folder / "n01" / "README.txt").write_text("not an image")
    (folder / ".hidden").mkdir()
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(folder / ".hidden" / "skip.png")
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(folder / "n02" / "._n02_0001.jpeg", format="PNG")
    return folder


@pytest.fixture
def trees(tmp_path) -> tuple[Path, Path]:
    return fx.build_gta2city_fixture(tmp_path / "raw"), build_image_folder(tmp_path / "imagenet" / "train")


def bench(raw: Path, folder: Path | None, **kw) -> BenchmarkConfig:
    return BenchmarkConfig(adapter="real", image_size=SIZE, patch_size=16, source="gta5", targets=TARGETS,
                           root=str(raw), generic_folder=None if folder is None else str(folder), **kw)


def collect(records) -> dict:
    out = {}
    for domain, split, count, recs in records:
        out[(domain, split)] = list(recs)
        assert len(out[(domain, split)]) == count, (domain, split)
    return out


def expected_crop(path: Path) -> np.ndarray:
    """Short side SIZE (bilinear), then the centred SIZE×SIZE square — computed here with PIL alone."""
    im = Image.open(path).convert("RGB")
    w, h = im.size
    nw, nh = (max(SIZE, round(w * SIZE / h)), SIZE) if h <= w else (SIZE, max(SIZE, round(h * SIZE / w)))
    im = im.resize((nw, nh), Image.BILINEAR) if (nw, nh) != (w, h) else im
    left, top = (nw - SIZE) // 2, (nh - SIZE) // 2
    return np.asarray(im)[top:top + SIZE, left:left + SIZE]


def test_listing_is_a_sorted_walk_of_image_files_only(trees):
    _, folder = trees
    assert real.list_image_folder(folder) == SORTED  # no .txt, nothing hidden, .JPEG / .PNG included
    linked = folder.parent / "elsewhere" / "n04"  # a class folder linked in; a link back up the tree
    linked.mkdir(parents=True)
    Image.fromarray(np.zeros((8, 8, 3), np.uint8)).save(linked / "n04_0001.png")
    (folder / "n04").symlink_to(linked)
    (folder / "n01" / "loop").symlink_to(folder)
    assert real.list_image_folder(folder) == sorted(SORTED + ["n04/n04_0001.png"])
    with pytest.raises(DataError, match=r"generic_folder .*nowhere not found"):
        real.list_image_folder(folder / "nowhere")
    (folder.parent / "empty").mkdir()
    with pytest.raises(DataError, match=r"generic_folder .*empty: no images ending in \.jpg, \.jpeg, \.png"):
        real.list_image_folder(folder.parent / "empty")


def test_real_adapter_emits_unlabelled_generic_splits(trees):
    raw, folder = trees
    info, records = ADAPTERS["real"](bench(raw, folder, target_images=1, generic_val_images=2), 0, {})
    out = collect(records)
    assert list(out) == [("gta5", "train"), ("cityscapes", "test"), ("bdd100k", "test"), ("mapillary", "test"),
                         ("generic", "train"), ("generic", "val")]
    # 8 images: val = the middles of two halves of the sorted listing (indices 2 and 6), train = the other 6
    val = [SORTED[2], SORTED[6]]
    train = [p for p in SORTED if p not in val]
    assert [r[0] for r in out[("generic", "val")]] == [name(p) for p in val]
    assert [r[0] for r in out[("generic", "train")]] == [name(p) for p in train]
    for rel, (rec_name, image, label) in zip(train + val, out[("generic", "train")] + out[("generic", "val")]):
        assert image.shape == (SIZE, SIZE, 3) and image.dtype == np.uint8
        assert label.shape == (SIZE, SIZE) and label.dtype == np.uint8 and (label == 255).all(), rec_name
        np.testing.assert_array_equal(image, expected_crop(folder / rel), err_msg=rel)
    again = collect(ADAPTERS["real"](bench(raw, folder, target_images=1, generic_val_images=2), 0, {})[1])
    for key in (("generic", "train"), ("generic", "val")):  # deterministic: same names, same pixels
        assert [r[0] for r in again[key]] == [r[0] for r in out[key]]
        assert all((a[1] == b[1]).all() for a, b in zip(again[key], out[key]))


def test_caps_spread_over_the_listing_and_keep_the_held_out_images(trees):
    raw, folder = trees
    capped = collect(ADAPTERS["real"](bench(raw, folder, target_images=1, generic_images=3,
                                            generic_val_images=2), 0, {})[1])
    rest = [p for i, p in enumerate(SORTED) if i not in (2, 6)]        # 6 left after the held-out two
    assert [r[0] for r in capped[("generic", "train")]] == [name(rest[i]) for i in (1, 3, 5)]
    assert [r[0] for r in capped[("generic", "val")]] == [name(SORTED[2]), name(SORTED[6])]  # cap-independent
    no_val = collect(ADAPTERS["real"](bench(raw, folder, target_images=1), 0, {})[1])
    assert ("generic", "val") not in no_val and len(no_val[("generic", "train")]) == len(IMAGES)
    with pytest.raises(DataError, match=r"holds 8 images: too few for generic_val_images 8"):
        ADAPTERS["real"](bench(raw, folder, generic_val_images=8), 0, {})


def test_without_the_key_no_generic_split_and_distill_says_1a_is_skipped(trees, caplog):
    raw, _ = trees
    out = collect(ADAPTERS["real"](bench(raw, None, target_images=1), 0, {})[1])
    assert not any(domain == "generic" for domain, _ in out)

    params = tiny_params()
    params.update(benchmark="gta2city", teacher="dinov2_s14", student="vit_t6_random")
    params["f2f"]["methods"] = []
    cfg = config.from_dict(params)
    meta = BenchmarkMeta(name="gta2city", classes=[], palette=[], source="gta5", targets=TARGETS, image_size=SIZE,
                         splits={"gta5": {"train": 8}, **{t: {"test": 1} for t in TARGETS}})
    with caplog.at_level(logging.INFO, logger="gkd.stages.distill"):
        assert distill.phases(cfg, meta) == [("train", "gta5", cfg.distill.source_epochs)]
    lines = [r.getMessage() for r in caplog.records if "phase 1a skipped" in r.getMessage()]
    assert len(lines) == 1 and "benchmarks.gta2city.generic_folder" in lines[0] and "no generic split" in lines[0]

    caplog.clear()
    with_generic = BenchmarkMeta(**{**meta.__dict__, "splits": {**meta.splits, "generic": {"train": 6, "val": 2}}})
    with caplog.at_level(logging.INFO, logger="gkd.stages.distill"):
        assert [p[0] for p in distill.phases(cfg, with_generic)] == ["generic", "train"]
    assert "phase 1a skipped" not in caplog.text


def test_a_bad_image_is_one_data_error_naming_it_or_is_skipped(trees, caplog):
    raw, folder = trees
    bad = folder / "n02" / "n02_0001.jpeg"
    fx.truncate(bad)
    records = ADAPTERS["real"](bench(raw, folder, target_images=1), 0, {})[1]
    with pytest.raises(DataError, match=rf"^{bad}: unreadable image"):
        for _, _, _, recs in records:
            list(recs)
    with caplog.at_level(logging.WARNING, logger="gkd.data"):
        out = collect(ADAPTERS["real"](bench(raw, folder, target_images=1, skip_bad=True), 0, {})[1])
    assert [r[0] for r in out[("generic", "train")]] == [name(p) for p in SORTED if p != "n02/n02_0001.jpeg"]
    assert [(s["domain"], s["split"], s["file"]) for s in real.real_adapter.last_skipped] == [
        ("generic", "train", str(bad))]
    assert "generic/train: skipped 1 bad samples" in caplog.text


def write_params(tmp: Path, raw: Path, **preset) -> Path:
    params = tiny_params()
    params.update(teacher="dinov2_s14", student="vit_t6_random")  # real benchmarks: no generic-pretrained preset
    params["f2f"]["methods"] = []
    params["benchmarks"]["gta2city"].update({"root": str(raw), "image_size": 64, **preset})
    path = tmp / "params.yaml"
    path.write_text(yaml.safe_dump(params, sort_keys=False))
    return path


def test_check_data_covers_the_generic_folder(trees, tmp_path, capsys):
    raw, folder = trees
    params = write_params(tmp_path, raw, generic_folder=str(folder), generic_val_images=2)
    assert gkd(["check-data", "--params", str(params), "--benchmark", "gta2city"]) == 0
    assert "generic/train 6, generic/val 2" in capsys.readouterr().out
    bad = folder / "n03" / "n03_0002.png"
    bad.write_bytes(b"not a PNG")
    assert gkd(["check-data", "--params", str(params), "--benchmark", "gta2city"]) == 1
    out = capsys.readouterr().out
    assert [line.split()[:2] for line in out.splitlines() if str(bad) in line] == [["unreadable", "generic/val"]]
    missing = write_params(tmp_path, raw, generic_folder=str(tmp_path / "nowhere"))
    assert gkd(["check-data", "--params", str(missing), "--benchmark", "gta2city"]) == 1
    assert "layout" in capsys.readouterr().out


def test_config_rejects_generic_keys_the_adapter_would_ignore(tmp_path):
    raw = tiny_params()
    with pytest.raises(ConfigError, match=r"^benchmarks.synthetic.generic_folder: the synthetic benchmark generates"):
        config.from_dict(config.merge(raw, {"benchmarks": {"synthetic": {"generic_folder": "/data/imagenet"}}}))
    with pytest.raises(ConfigError, match=r"^benchmarks.gta2city.generic_images / generic_val_images cap the images "
                                          r"of benchmarks.gta2city.generic_folder, which is not set"):
        config.from_dict(config.merge(raw, {"benchmarks": {"gta2city": {"generic_images": 1000}}}))
    with pytest.raises(ConfigError, match=r"^benchmarks.gta2city.generic_val_images must be >= 0, got -1"):
        config.from_dict(config.merge(raw, {"benchmarks": {"gta2city": {"generic_folder": "/x",
                                                                         "generic_val_images": -1}}}))
    # unlabelled generic images never feed the presets trained here on labelled ones (pretrain / classify)
    with pytest.raises(ConfigError, match=r"^student 'vit_t6' has `weights: classify`.*has only unlabelled generic "
                                          r"images \(generic_folder"):
        config.from_dict(config.merge(raw, {"benchmark": "gta2city", "teacher": "dinov2_s14", "f2f": {"methods": []},
                                            "benchmarks": {"gta2city": {"generic_folder": "/data/imagenet"}}}))


@pytest.mark.slow  # runs prepare
def test_prepared_generic_splits_feed_phase_1a_and_the_fidelity_check(trees, tmp_path):
    """Through `prepare`: the splits are written, held out for the fidelity check, and distill plans 1a."""
    from gkd import features
    from gkd.data.prepared import SegmentationSplit, read_meta
    from gkd.stages import prepare

    raw, folder = trees
    cfg = config.load(write_params(tmp_path, raw, image_size=SIZE, target_images=1, generic_folder=str(folder),
                                   generic_images=4, generic_val_images=2), benchmark="gta2city")
    prepare.run(cfg, tmp_path / "prepared", None)
    meta = read_meta(tmp_path / "prepared")
    assert meta.splits["generic"] == {"train": 4, "val": 2}
    assert ("generic", "val") in features.heldout_splits(meta)
    image, label, _ = SegmentationSplit(tmp_path / "prepared", "generic", "val")[1]
    assert tuple(image.shape) == (3, SIZE, SIZE) and (label == 255).all()
    assert [p[:2] for p in distill.phases(cfg, meta)] == [("generic", "generic"), ("train", "gta5")]
