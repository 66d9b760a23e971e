"""The real DAG, end to end, through both front-ends on the tiny config (the `.test` idea)."""
from __future__ import annotations

import json
import subprocess
import time

import pandas as pd
import pytest

from conftest import copy_repo, run, tiny_params

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """The whole tiny DAG through Snakemake and through DVC, side by side (one core each: their jobs
    are mostly process start-up, so running the two front-ends at once halves the wall time)."""
    smk = copy_repo(tmp_path_factory.mktemp("smk"), tiny_params())
    dvc = copy_repo(tmp_path_factory.mktemp("dvc"), tiny_params())
    proc = subprocess.Popen(["dvc", "repro"], cwd=dvc, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        run(["snakemake", "--cores", "1"], cwd=smk)  # rule all: F2L, F2F tables and the qualitative figure
    finally:
        out, _ = proc.communicate(timeout=1800)
    assert proc.returncode == 0, out[-3000:]
    return smk, dvc


@pytest.fixture(scope="module")
def snakemake_repo(runs):
    return runs[0]


@pytest.fixture(scope="module")
def dvc_repo(runs):
    return runs[1]


def check_table(path):
    df = pd.read_csv(path)
    assert df["Method"].tolist() == ["Teacher", "Student-only", "+GKD"]
    assert df.columns.tolist() == ["Method", "Params (M)", "city", "night", "fog", "rain", "snow", "Avg",
                                   "sim (source val)"]
    scores = df.drop(columns=["Method", "Params (M)"]).to_numpy()
    assert ((scores >= 0) & (scores <= 100)).all()
    assert abs(df["Avg"] - df[["city", "night", "fog", "rain", "snow"]].mean(axis=1)).max() < 0.02
    return df


def test_snakemake_runs_the_whole_dag(snakemake_repo):
    check_table(snakemake_repo / "results/f2l_table.csv")
    f2f = pd.read_csv(snakemake_repo / "results/f2f_table.csv")
    assert f2f["Method"].tolist() == ["Teacher", "+GKD"]
    for png in ("plots/f2l_table.png", "plots/f2l_radar.png", "plots/f2f_table.png", "plots/qualitative.png",
                "plots/synthetic_samples.png"):
        assert (snakemake_repo / png).stat().st_size > 10_000
    metrics = json.loads((snakemake_repo / "metrics/gkd.json").read_text())
    assert set(metrics["per_class"]["fog"]) == {"road", "sidewalk", "building", "vegetation", "sky", "car", "person",
                                                "pole"}
    assert (snakemake_repo / "logs/gkd/stage1/metrics.json").is_file()  # dvclive training curves
    # nothing left to do afterwards
    assert "Nothing to be done" in run(["snakemake", "--cores", "all"], cwd=snakemake_repo).stderr


def test_dvc_repro_gives_the_same_bytes_and_is_then_a_noop(dvc_repo, snakemake_repo):
    check_table(dvc_repo / "results/f2l_table.csv")
    # same params, same commands → identical metrics through either front-end
    for name in ("teacher", "student_only", "gkd", "f2f/gkd"):
        assert (dvc_repo / f"metrics/{name}.json").read_text() == (snakemake_repo / f"metrics/{name}.json").read_text()
    start = time.time()
    out = run(["dvc", "repro"], cwd=dvc_repo).stdout
    assert "didn't change, skipping" in out and "Running stage" not in out
    assert time.time() - start < 30


def test_a_param_change_reruns_exactly_the_stages_that_read_it(snakemake_repo, dvc_repo):
    """Both front-ends see the same params per stage: change one method knob, ask each what it affects.

    DVC names the stages whose params changed; Snakemake's `--summary` marks the outputs whose recorded
    params differ (its dry run stops looking at params once an upstream job reruns, and
    `--list-changes params` of Snakemake 9.27 lists unchanged files too).
    """
    import yaml
    from dvc.repo import Repo
    expected = {"distill@gkd", "adapt@gkd", "f2f_distill@gkd", "f2f_adapt@gkd"}
    with Repo(str(dvc_repo)) as r:
        expected_outs = {str(o.def_path) for s in r.index.stages if s.name in expected for o in s.outs}
    changed = {}
    for repo in (snakemake_repo, dvc_repo):
        text = (repo / "params.yaml").read_text()
        p = yaml.safe_load(text)
        p["method_configs"]["gkd"]["lambda_patch"] = 0.5
        (repo / "params.yaml").write_text(yaml.safe_dump(p, sort_keys=False))
        try:
            if repo == dvc_repo:
                changed["dvc"] = set(json.loads(run(["dvc", "status", "--json"], cwd=repo).stdout))
            else:
                rows = [line.split("\t") for line in run(["snakemake", "--summary"], cwd=repo).stdout.splitlines()]
                changed["snakemake"] = {r[0] for r in rows if len(r) > 4 and r[4] == "params changed"}
        finally:
            (repo / "params.yaml").write_text(text)
    assert changed["dvc"] == expected, changed["dvc"]
    assert changed["snakemake"] == expected_outs, (changed["snakemake"], expected_outs)


def test_dvc_push_then_fresh_clone_pull_restores_everything(dvc_repo, tmp_path):
    """Teacher features and models come from a (local directory) remote: after `dvc pull` in a fresh
    clone, `dvc repro` has nothing to run and every checksum matches."""
    remote = tmp_path / "remote"
    run(["dvc", "remote", "add", "-d", "store", str(remote)], cwd=dvc_repo)
    run("git add -A && git -c user.email=t@e -c user.name=t commit -qm 'run + remote'", cwd=dvc_repo)
    run(["dvc", "push"], cwd=dvc_repo)
    clone = tmp_path / "clone"
    run(["git", "clone", "-q", str(dvc_repo), str(clone)], cwd=tmp_path)
    assert not (clone / "features/synthetic/tiny_vfm").exists() and not (clone / "models/gkd/stage1").exists()
    run(["dvc", "pull"], cwd=clone)
    status = run(["dvc", "status"], cwd=clone).stdout
    assert "up to date" in status, status
    out = run(["dvc", "repro"], cwd=clone).stdout
    assert "Running stage" not in out, out
    for rel in ("features/synthetic/tiny_vfm/train/tokens-00000.npy", "models/gkd/stage1/backbone.safetensors",
                "models/teacher_task/model.safetensors"):
        assert (clone / rel).read_bytes() == (dvc_repo / rel).read_bytes(), rel


def test_dvc_exp_run_with_another_student_reruns_only_student_stages(dvc_repo):
    out = run(["dvc", "exp", "run", "-S", "student=vit_s"], cwd=dvc_repo).stdout
    ran = {line.split("'")[1] for line in out.splitlines() if line.startswith("Running stage")}
    assert ran == {"student_weights", "distill@gkd", "adapt@gkd", "train@student_only", "evaluate@gkd",
                   "evaluate@student_only", "report", "qualitative"}, ran
    show = run(["dvc", "exp", "show", "--json"], cwd=dvc_repo).stdout
    assert "metrics/gkd.json" in show and "vit_s" in show
