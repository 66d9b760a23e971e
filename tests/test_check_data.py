"""`gkd check-data` on fixture trees in the official layouts: every planted problem in one run, the clean
tree passes, the same selection as `prepare`; and the image_size / patch_size check of the config."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import yaml

import fixtures_datasets as fx
from conftest import tiny_params
from gkd import config
from gkd.cli import main as gkd
from gkd.config import ConfigError


def write_params(tmp: Path, raw: Path, **preset) -> Path:
    params = tiny_params()
    # real benchmarks have no generic stream: no preset whose weights are trained on it (config refuses them)
    params.update(teacher="dinov2_s14", student="vit_t6_random")
    params["f2f"]["methods"] = []
    params["benchmarks"]["gta2city"].update({"root": str(raw), "image_size": 64, **preset})
    path = tmp / "params.yaml"
    path.write_text(yaml.safe_dump(params, sort_keys=False))
    return path


def check(capsys, params: Path, *args: str) -> tuple[int, str, str]:
    rc = gkd(["check-data", "--params", str(params), "--benchmark", "gta2city", *args])
    out, err = capsys.readouterr()
    return rc, out, err


def first(folder: Path, pattern: str, k: int = 0) -> Path:
    return sorted(folder.rglob(pattern))[k]


def plant_problems(raw: Path) -> dict[str, list[Path]]:
    """One or two problems of every kind, spread over the source and all three targets."""
    missing = raw / "GTA5/labels/00003.png"
    missing.unlink()
    unreadable_image = first(raw / "cityscapes/leftImg8bit/val", "*.png", 1)
    fx.truncate(unreadable_image)
    unreadable_label = first(raw / "bdd100k/labels/sem_seg/masks/val", "*.png", 2)
    unreadable_label.write_bytes(b"this is not a PNG")
    unknown_values = raw / "GTA5/labels/00005.png"                    # Cityscapes ids stop at 33
    fx.save_palette(unknown_values, np.full((48, 88), 200, np.uint8))
    wrong_format = first(raw / "cityscapes/gtFine/val", "*_gtFine_labelIds.png", 3)
    fx.save_rgb(wrong_format, np.zeros((48, 96, 3), np.uint8))       # a colour image where ids belong
    size_mismatch = first(raw / "mapillary/validation/labels", "*.png", 0)
    fx.save_palette(size_mismatch, np.zeros((10, 12), np.uint8))
    return {"missing label": [raw / "GTA5/images/00003.png"],
            "unreadable": [unreadable_image, unreadable_label],
            "bad label": [unknown_values, wrong_format],
            "size mismatch": [size_mismatch]}


@pytest.fixture
def raw(tmp_path) -> Path:
    return fx.build_gta2city_fixture(tmp_path / "raw")


def test_clean_tree_passes(raw, tmp_path, capsys):
    rc, out, _ = check(capsys, write_params(tmp_path, raw))
    assert rc == 0, out
    assert "no problems in 20 samples of 4 splits" in out
    assert "gta5/train 8, cityscapes/val 4, bdd100k/val 4, mapillary/val 4" in out


def test_every_planted_problem_is_reported_in_one_run(raw, tmp_path, capsys):
    planted = plant_problems(raw)
    params = write_params(tmp_path, raw)
    rc, out, _ = check(capsys, params, "--workers", "2", "--out", str(tmp_path / "problems.json"))
    assert rc == 1
    lines = out.splitlines()
    for kind, files in planted.items():
        for f in files:
            hits = [line for line in lines if str(f) in line and line.strip().startswith(kind)]
            assert hits, f"{kind} of {f} not reported:\n{out}"
    assert any("label values [200]" in line for line in lines)                    # names the bad value
    assert "summary: layout 0, missing label 1, unreadable 2, bad label 2, size mismatch 1" in out
    assert "hint: set `skip_bad: true` in benchmarks.gta2city" in out
    report = json.loads((tmp_path / "problems.json").read_text())
    assert report["counts"] == {"layout": 0, "missing label": 1, "unreadable": 2, "bad label": 2, "size mismatch": 1}
    # one worker finds exactly the same, in the same order
    rc1, out1, _ = check(capsys, params, "--workers", "1")
    assert (rc1, out1) == (rc, out)


@pytest.mark.slow  # runs prepare
def test_reports_the_samples_prepare_skips(raw, tmp_path, capsys):
    """The preflight and prepare's skip_bad agree on which samples are bad (same listing, same decoders)."""
    from gkd import check_data
    from gkd.stages import prepare
    plant_problems(raw)
    cfg = config.load(write_params(tmp_path, raw, skip_bad=True), benchmark="gta2city")
    flagged = {p.sample for p in check_data.run(cfg).problems}
    prepare.run(cfg, tmp_path / "prepared", None)
    skipped = {entry["file"] for entry in json.loads((tmp_path / "prepared/skipped.json").read_text())}
    assert flagged == skipped and len(flagged) == 6


def test_layout_problems_do_not_hide_the_others(raw, tmp_path, capsys):
    import shutil
    shutil.rmtree(raw / "bdd100k/labels/sem_seg/masks/val")
    (raw / "GTA5/labels/00002.png").unlink()
    rc, out, _ = check(capsys, write_params(tmp_path, raw))
    assert rc == 1
    assert "layout         bdd100k/val" in out and "label folder" in out
    assert "GTA5/images/00002.png: no label" in out
    assert "decoded in 3 splits" in out  # the other splits were still decoded
    assert "summary: layout 1, missing label 1, unreadable 0, bad label 0, size mismatch 0" in out
    assert "layout problems stop prepare even with skip_bad" in out


def test_caps_select_what_prepare_reads(raw, tmp_path, capsys):
    (raw / "GTA5/labels/00007.png").unlink()       # beyond the first 4 training images: prepare never reads it
    rc, out, _ = check(capsys, write_params(tmp_path, raw, train_images=4))
    assert rc == 0 and "gta5/train 4," in out, out


def test_synthetic_has_nothing_to_check(tmp_path, capsys):
    params = tmp_path / "params.yaml"
    params.write_text(yaml.safe_dump(tiny_params()))
    rc = gkd(["check-data", "--params", str(params)])
    assert rc == 0 and "nothing to check" in capsys.readouterr().out


def test_image_size_not_a_multiple_of_patch_size_fails_at_load_naming_both_keys(raw, tmp_path, capsys):
    params = tiny_params()
    params["benchmarks"]["gta2city"]["image_size"] = 500
    with pytest.raises(ConfigError, match=r"benchmarks\.gta2city\.image_size \(500\) is not a multiple of "
                                          r"benchmarks\.gta2city\.patch_size \(16\).*image_size 496 or 512"):
        config.from_dict(params)
    params["benchmarks"]["gta2city"].update(image_size=512, patch_size=0)
    with pytest.raises(ConfigError, match=r"benchmarks\.gta2city\.patch_size must be >= 1, got 0"):
        config.from_dict(params)
    rc, _, err = check(capsys, write_params(tmp_path, raw, image_size=50))
    assert rc == 2 and err.count("\n") == 1 and "benchmarks.gta2city.image_size (50)" in err
