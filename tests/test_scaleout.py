"""Scale out and survive: 2-process DDP, kill-and-resume, atomic outputs, clear errors on bad input."""
from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time

import pytest
import torch
import yaml
from safetensors.torch import load_file

from conftest import run, tiny_params

# through the stages' own launcher: flags beyond a one-process config file go to `accelerate launch`
LAUNCH_2 = [sys.executable, "-m", "gkd.launch", "--multi_gpu", "--num_processes", "2", "--num_machines", "1",
            "--mixed_precision", "no", "--dynamo_backend", "no"]


def params_file(ws, name, **distill):
    p = yaml.safe_load((ws / "params.yaml").read_text())
    p["distill"].update(distill)
    path = ws / f"{name}.yaml"
    path.write_text(yaml.safe_dump(p))
    return str(path)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def failure_report(stderr: str) -> str:
    """Each rank's traceback and error lines first (the launcher prefixes them with [rankN]), then the tail:
    the tail alone shows only the rank that noticed the other one's death."""
    errors = [line for line in stderr.splitlines() if "Error" in line or "Traceback" in line]
    return "\n".join(errors[-40:]) + "\n--- tail ---\n" + stderr[-3000:]


def distill_cmd(ws, params, out, method="gkd_no_mask"):
    return ["-m", "gkd.stages.distill", "--params", params, "--method", method, "--data", str(ws / "data"),
            "--student-weights", str(ws / "student"), "--features", str(ws / "feat"), "--out", str(out)]


@pytest.mark.slow
def test_two_process_ddp_matches_one_process_with_the_same_global_batch(ws, tmp_path):
    """gloo DDP on 2 CPU processes (batch 8 each) vs 1 process (batch 16): same data order, same
    augmentation per sample, no masking (its 'first half of the local batch' differs by design). If
    gradients were not all-reduced, the two ranks would drift apart and away from the 1-process run."""
    one, two = tmp_path / "one", tmp_path / "two"
    run([sys.executable] + distill_cmd(ws, params_file(ws, "b16", batch_size=16), one), cwd=ws)
    env = dict(os.environ, ACCELERATE_USE_CPU="true")
    port = ["--main_process_port", str(free_port())]  # not the default 29500, which another job may hold
    proc = subprocess.run(LAUNCH_2 + port + distill_cmd(ws, params_file(ws, "b8", batch_size=8), two), cwd=ws,
                          env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, failure_report(proc.stderr)
    a, b = load_file(str(one / "backbone.safetensors")), load_file(str(two / "backbone.safetensors"))
    init = load_file(str(ws / "student" / "backbone.safetensors"))
    moved = max((a[k] - init[k]).abs().max().item() for k in init)
    diff = max((a[k] - b[k]).abs().max().item() for k in a)
    assert moved > 1e-4, "training did not move the weights"
    assert diff < 1e-4 and diff < moved / 20, (diff, moved)  # stated tolerance: float reduction order only


def _snapshot_rank(rank: int, port: int, resume_dir) -> None:
    """One rank of test_a_ddp_snapshot_holds_every_ranks_state: rank 1 starts its save 2 s late (a busy core)."""
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), RANK=str(rank), WORLD_SIZE="2",
                      LOCAL_RANK=str(rank), LOCAL_WORLD_SIZE="2", ACCELERATE_USE_CPU="true")
    from accelerate import Accelerator
    from gkd import train
    acc = Accelerator(cpu=True)
    acc.prepare(torch.nn.Linear(2, 2))
    if rank == 1:
        save = acc.save_state
        acc.save_state = lambda path: (time.sleep(2), save(path))
    train._save_state(acc, resume_dir, 7)


@pytest.mark.slow
def test_a_ddp_snapshot_holds_every_ranks_state(tmp_path):
    """Every rank writes its RNG state into the snapshot: renaming it before the slowest rank is done left that
    rank's file in a stray folder (or failed its write: the CI run where rank 1 died mid-stage)."""
    import torch.multiprocessing as mp
    mp.spawn(_snapshot_rank, args=(free_port(), tmp_path), nprocs=2)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["state"]
    assert {"random_states_0.pkl", "random_states_1.pkl", "step.json"} <= {p.name for p in (tmp_path / "state").iterdir()}


@pytest.mark.slow
def test_kill_mid_stage_then_resume_gives_bitwise_identical_weights(ws, tmp_path):
    params = params_file(ws, "long", source_epochs=8, checkpoint_every=3)
    ref, out = tmp_path / "ref", tmp_path / "killed"
    run([sys.executable] + distill_cmd(ws, params, ref), cwd=ws)
    resume = out.with_name(f".{out.name}.resume")

    def snapshot():  # phase 1b's snapshots (phase 1a, 3 steps here, ends before its first one)
        return list(resume.glob("*/state/step.json"))
    proc = subprocess.Popen([sys.executable] + distill_cmd(ws, params, out), cwd=ws, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    deadline = time.time() + 300
    while not snapshot() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert snapshot(), "no snapshot was written before the stage ended"
    # atomic outputs: a killed stage leaves nothing at its output path
    assert not out.exists()
    assert not [p for p in out.parent.iterdir() if p.name.startswith(out.name)]
    resumed = run([sys.executable] + distill_cmd(ws, params, out), cwd=ws, check=True)
    assert "resumed from step" in resumed.stderr
    a, b = load_file(str(ref / "backbone.safetensors")), load_file(str(out / "backbone.safetensors"))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    assert not out.with_name(f".{out.name}.resume").exists()  # snapshots are removed once done


def test_atomic_path_keeps_the_old_artifact_on_failure(tmp_path):
    from gkd import io
    target = tmp_path / "model"
    with io.atomic_path(target, is_dir=True) as tmp:
        (tmp / "w.bin").write_text("good")
    with pytest.raises(RuntimeError):
        with io.atomic_path(target, is_dir=True) as tmp:
            (tmp / "w.bin").write_text("half")
            raise RuntimeError("killed")
    assert (target / "w.bin").read_text() == "good"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["model"]


def test_corrupt_feature_shard_is_one_clear_error_and_nothing_is_lost(ws, tmp_path):
    feat = tmp_path / "feat"
    shutil.copytree(ws / "feat", feat)
    shard = feat / "train" / "tokens-00000.npy"
    shard.write_bytes(shard.read_bytes()[:500])  # truncated
    out = tmp_path / "stage1"
    cmd = distill_cmd(ws, str(ws / "params.yaml"), out, method="gkd")
    cmd[cmd.index("--features") + 1] = str(feat)
    proc = run([sys.executable] + cmd, cwd=ws, check=False)
    assert proc.returncode == 2
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith("error: teacher cache shard") and "tokens-00000.npy" in last and "rerun" in last
    assert not out.exists()
    assert (ws / "feat" / "train" / "tokens-00000.npy").stat().st_size > 500  # the real cache is untouched


def test_truncated_checkpoint_is_one_clear_error(ws, tmp_path):
    model = tmp_path / "model"
    shutil.copytree(ws / "teacher_task", model)
    weights = model / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])
    proc = run([sys.executable, "-m", "gkd.stages.evaluate", "--params", str(ws / "params.yaml"), "--model",
                str(model), "--data", str(ws / "data"), "--out", str(tmp_path / "m.json"), "--name", "teacher"],
               cwd=ws, check=False)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines()[-1].startswith(f"error: cannot read weights file '{weights}'")
    assert not (tmp_path / "m.json").exists()


def test_wrong_type_in_params_is_one_clear_error(ws, tmp_path):
    p = yaml.safe_load((ws / "params.yaml").read_text())
    p["adapt"]["epochs"] = "three"
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(p))
    proc = run([sys.executable, "-m", "gkd.stages.adapt", "--params", str(path), "--method", "student_only",
                "--data", str(ws / "data"), "--init", str(ws / "student"), "--out", str(tmp_path / "o")],
               cwd=ws, check=False)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines()[-1] == "error: adapt.epochs: expected int, got 'three'"


@pytest.mark.slow  # a Snakemake front-end run
def test_slurm_profile_dry_run_resolves_with_per_rule_resources(tmp_path):
    """`snakemake --profile workflow/profiles/slurm --dry-run` resolves with the executor plugin (the
    `slurm` extra, also in `test`); every job carries its family's gpu / mem_mb / runtime from
    workflow/resources.yaml (execution settings, not params)."""
    import re
    import yaml
    from conftest import copy_repo, run, snakemake_job_blocks, tiny_params
    params = tiny_params()
    repo = copy_repo(tmp_path, params)
    out = run(["snakemake", "--profile", "workflow/profiles/slurm", "--dry-run", "results/f2l_table.csv"],
              cwd=repo).stdout
    families = {"prepare": "data", "teacher_features": "teacher", "distill-gkd": "train", "evaluate-gkd": "evaluate"}
    blocks = snakemake_job_blocks(out)
    for rule, family in families.items():
        want = yaml.safe_load((repo / "workflow/resources.yaml").read_text())[family]
        resources = re.search(r"^    resources: (.*)$", blocks[rule], re.M).group(1)
        for key in ("gpu", "mem_mb", "runtime"):
            assert f"{key}={want[key]}," in resources + ",", (rule, key, resources)
    assert "slurm_partition=cpu" in blocks["prepare"] and "slurm_partition=gpu" in blocks["distill-gkd"]
