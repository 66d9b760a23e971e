"""benchmarks/stage1_screen.py: one row per stage-1 run from its fidelity.json and metrics.json, the figure."""
from __future__ import annotations

import json
import subprocess
import sys

import pandas as pd

from conftest import ROOT


def fake_run(folder, avg, fea_r2):
    (folder / "stage1").mkdir(parents=True)
    probe = {"generic": {"cka_init": 0.4, "cka_teacher": 0.05}, "sim": {"probe_patch": 0.41}}
    phases = {"1a": {"domains": {"generic": {"fea": {"r2": fea_r2}}}, "probe": probe},
              "1b": {"domains": {}, "probe": {**probe, "generic": {"cka_init": 0.3, "cka_teacher": 0.06}}}}
    (folder / "stage1" / "fidelity.json").write_text(json.dumps({"phases": phases}))
    (folder / "metrics.json").write_text(json.dumps({"avg": avg, "source": 58.0}))


def test_rows_come_from_each_runs_files_and_the_figure_is_written(tmp_path):
    fake_run(tmp_path / "a", 15.9, 0.01)
    fake_run(tmp_path / "b", 8.5, 0.32)
    out, plot = tmp_path / "screen.csv", tmp_path / "screen.png"
    subprocess.run([sys.executable, str(ROOT / "benchmarks" / "stage1_screen.py"), "--runs", f"base={tmp_path / 'a'}",
                    f"hw={tmp_path / 'b'}", "--out", str(out), "--plot", str(plot)], check=True, capture_output=True)
    df = pd.read_csv(out)
    assert df["Method"].tolist() == ["base", "hw"] and df["Avg"].tolist() == [15.9, 8.5]
    assert df["generic_fea_r2_1a"].tolist() == [0.01, 0.32] and df["generic_cka_init"].tolist() == [0.3, 0.3]
    assert plot.stat().st_size > 0


def test_a_run_without_a_recipe_name_is_one_error(tmp_path):
    proc = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "stage1_screen.py"), "--runs", str(tmp_path)],
                          capture_output=True, text=True)
    assert proc.returncode == 2 and f"got {str(tmp_path)!r}" in proc.stderr
