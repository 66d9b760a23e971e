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
