"""benchmarks/paper_scale.py's compute table: images per stage, runs per method kind, hours from FLOPs or speed."""
import importlib.util
from pathlib import Path

import pytest

from gkd.config import load

ROOT = Path(__file__).resolve().parent.parent
spec = importlib.util.spec_from_file_location("paper_scale", ROOT / "benchmarks/paper_scale.py")
paper_scale = importlib.util.module_from_spec(spec)
spec.loader.exec_module(paper_scale)

FLOPS = {"teacher_forward": 60.0, "task_frozen": 65.0, "task_finetune": 190.0, "stage1_online": 260.0,
         "stage1_cached": 200.0, "evaluate_slide": 192.0}
FLOPS_224 = {k: v / 5 for k, v in FLOPS.items()}


def test_sliding_windows_per_test_image_follow_the_paper_protocol():
    # 1024×512 at window 512 / stride 341: one row of three; 1280×720: two rows of four; ISPRS: one
    assert paper_scale.eval_windows("cityscapes") == 3
    assert paper_scale.eval_windows("bdd100k") == 8
    assert paper_scale.eval_windows("acdc_fog") == 6
    assert paper_scale.eval_windows("vaihingen_irrg") == 1


def test_compute_rows_without_a_gpu_run_estimate_hours_from_counted_flops():
    cfg = load(ROOT / "params.yaml")
    rows = {r["stage"] + "|" + r["work"]: r for r in paper_scale.compute_rows(cfg, "gta2city", FLOPS, FLOPS_224, None)}
    crops = 24_966 * 2
    b1 = next(r for k, r in rows.items() if k.startswith("distill 1b"))
    assert b1["images, params.yaml"] == cfg.raw["distill"]["source_epochs"] * crops
    assert b1["images, paper"] == 300 * 24_966
    assert b1["GPU-hours per run, paper"] == pytest.approx(300 * 24_966 * 260.0 / (paper_scale.ASSUMED_TFLOPS * 1e3) / 3600,
                                                           abs=1e-3)
    a1 = next(r for k, r in rows.items() if k.startswith("distill 1a"))
    assert a1["GFLOP per image"] == pytest.approx(52.0)   # 224-px figures for ImageNet
    # runs per kind follow params.yaml's F2L + F2F methods (GKD and Proteus distil in F2L, GKD in F2F)
    methods = [*cfg.raw["methods"], *cfg.raw["f2f"]["methods"]]
    assert b1["runs (F2L + F2F, one seed)"] == sum(m in ("gkd", "proteus") for m in methods)
    evaluate = next(r for k, r in rows.items() if k.startswith("evaluate"))
    assert evaluate["runs (F2L + F2F, one seed)"] == len(methods) + 1
    assert evaluate["images, params.yaml"] == 500 * 3 + 1_000 * 8 + 2_000 * 3


def test_compute_rows_use_measured_images_per_second_where_a_gpu_run_exists():
    cfg = load(ROOT / "params.yaml")
    speed = {"source": "gpu_bench.json: test", **{k: 100.0 for k in FLOPS}}
    rows = paper_scale.compute_rows(cfg, "city2acdc", FLOPS, FLOPS_224, speed)
    b1 = next(r for r in rows if r["stage"].startswith("distill 1b"))
    assert b1["GPU-hours per run, paper"] == pytest.approx(300 * 2_975 / 100.0 / 3600, abs=1e-3)
    a1 = next(r for r in rows if r["stage"].startswith("distill 1a"))   # not benched at 224 px: still the estimate
    assert a1["GPU-hours per run, paper"] == pytest.approx(100 * paper_scale.IMAGENET_1K * 52.0 / (paper_scale.ASSUMED_TFLOPS * 1e3) / 3600, abs=1e-3)
    totals = paper_scale.total_hours(rows, "city2acdc")
    assert totals["paper, 1a on ImageNet"] > totals["paper, no 1a"] > 0
