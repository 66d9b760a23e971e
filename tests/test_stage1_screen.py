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


def test_append_keeps_earlier_rows_and_reads_a_dag_model_folder(tmp_path):
    """A DAG model folder's metrics live at the mirror path under metrics/ (WS/metrics/.../gkd.json)."""
    fake_run(tmp_path / "a", 15.9, 0.01)
    model = tmp_path / "ws" / "models" / "synthetic" / "seed1" / "gkd"
    fake_run(model, 9.1, 0.3)
    metrics = tmp_path / "ws" / "metrics" / "synthetic" / "seed1" / "gkd.json"
    metrics.parent.mkdir(parents=True)
    (model / "metrics.json").rename(metrics)
    out, plot = tmp_path / "screen.csv", tmp_path / "screen.png"
    script = [sys.executable, str(ROOT / "benchmarks" / "stage1_screen.py"), "--out", str(out), "--plot", str(plot)]
    subprocess.run(script + ["--runs", f"base={tmp_path / 'a'}"], check=True, capture_output=True)
    subprocess.run(script + ["--append", "--runs", f"slr={model}", f"base2={tmp_path / 'a'}"], check=True,
                   capture_output=True)
    df = pd.read_csv(out)
    assert df["Method"].tolist() == ["slr", "base2"] and df["Avg"].tolist() == [9.1, 15.9]
    subprocess.run(script + ["--append", "--runs", f"base={tmp_path / 'a'}"], check=True, capture_output=True)
    assert pd.read_csv(out)["Method"].tolist() == ["slr", "base"]


def test_without_runs_it_redraws_the_figure_from_the_table_and_leaves_the_table(tmp_path):
    fake_run(tmp_path / "a", 15.9, 0.01)
    out, plot = tmp_path / "screen.csv", tmp_path / "screen.png"
    script = [sys.executable, str(ROOT / "benchmarks" / "stage1_screen.py"), "--out", str(out), "--plot", str(plot)]
    subprocess.run(script + ["--runs", f"base={tmp_path / 'a'}"], check=True, capture_output=True)
    table = out.read_bytes()
    plot.unlink()
    subprocess.run(script, check=True, capture_output=True)
    assert plot.stat().st_size > 0 and out.read_bytes() == table
    missing = subprocess.run(script[:2] + ["--out", str(tmp_path / "none.csv")], capture_output=True, text=True)
    assert missing.returncode == 2 and "none.csv to redraw" in missing.stderr


def test_every_method_of_a_figure_gets_its_own_colour_and_marker():
    """Fifteen recipes in the screen: tab10's ten colours alone would give five of them a colour twice."""
    from gkd.plots import _plt, series_style
    plt = _plt()
    styles = [series_style(plt, i) for i in range(15)]
    assert len({(tuple(s["color"]), s["marker"]) for s in styles}) == 15
