"""`python -m gkd.launch`: one interpreter for a one-process config, `accelerate launch` for anything else."""
from __future__ import annotations

import subprocess
import sys

import yaml

from conftest import ROOT
from gkd import launch


def test_one_process_configs_run_in_place_and_others_go_to_accelerate(tmp_path):
    single = tmp_path / "single.yaml"
    single.write_text(yaml.safe_dump({"distributed_type": "NO", "num_processes": 1, "num_machines": 1}))
    multi = tmp_path / "multi.yaml"
    multi.write_text(yaml.safe_dump({"distributed_type": "MULTI_GPU", "num_processes": 8, "num_machines": 1}))
    one = {"distributed_type": "NO", "num_processes": 1, "num_machines": 1}
    assert launch.single_process(["--config_file", str(single)]) == one
    assert launch.single_process(["--quiet", "--config_file", str(single)]) == one
    assert launch.single_process(["--config_file", str(multi)]) is None
    assert launch.single_process(["--multi_gpu", "--num_processes", "2"]) is None          # flags: accelerate decides
    assert launch.single_process(["--config_file", str(single), "--num_processes", "2"]) is None
    assert launch.split(["--config_file", "a.yaml", "-m", "gkd.stages.prepare", "--out", "x"]) == \
        (["--config_file", "a.yaml"], "gkd.stages.prepare", ["--out", "x"])
    committed = ROOT / "workflow" / "accelerate.yaml"
    assert launch.single_process(["--config_file", str(committed)]) == yaml.safe_load(committed.read_text())
    # a one-process config file that says otherwise is not run in place
    other = tmp_path / "other.yaml"
    other.write_text(yaml.safe_dump({**one, "num_machines": 2}))
    assert launch.single_process(["--config_file", str(other)]) is None


def test_a_stage_runs_in_the_launchers_own_interpreter():
    """The stage's argv is its own (argparse sees the stage's flags) and its exit code comes back."""
    cmd = [sys.executable, "-m", "gkd.launch", "--config_file", "workflow/accelerate.yaml", "-m", "gkd.stages.prepare"]
    ok = subprocess.run(cmd + ["--help"], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert ok.returncode == 0 and "usage: prepare.py" in ok.stdout and "--samples" in ok.stdout
    bad = subprocess.run(cmd + ["--params", "nope.yaml", "--out", "x"], cwd=ROOT, capture_output=True, text=True,
                         timeout=120)
    assert bad.returncode == 2 and "params file 'nope.yaml' not found" in bad.stderr


def test_startup_benchmark_writes_its_rounds_and_the_stage_overhead(ws, tmp_path):
    """benchmarks/startup.py times the no-work stage through gkd.launch beside the imports (no timing asserted)."""
    out = tmp_path / "startup.json"
    subprocess.run([sys.executable, "benchmarks/startup.py", "--rounds", "2", "--params", str(ws / "params.yaml"),
                    "--data", str(ws / "data"), "--out", str(out)], cwd=ROOT, check=True, timeout=600,
                   capture_output=True)
    figures = yaml.safe_load(out.read_text())
    assert set(figures["rounds_s"]) == {"python", "import torch", "import torchvision", "import timm", "stage"}
    assert all(len(v) == 2 and min(v) > 0 for v in figures["rounds_s"].values())
    assert figures["median_s"]["stage"] == round(figures["rounds_s"]["stage"][1], 2)   # the first round is dropped
    assert "gkd.launch" in figures["command"] and "gkd.stages.student_weights" in figures["command"]
