"""The real DAG, end to end, through both front-ends on the tiny config (the `.test` idea)."""
from __future__ import annotations

import json
import time

import pandas as pd
import pytest

from conftest import copy_repo, run, tiny_params

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def snakemake_repo(tmp_path_factory):
    repo = copy_repo(tmp_path_factory.mktemp("smk"), tiny_params())
    run(["snakemake", "--cores", "all", "results/f2l_table.csv"], cwd=repo)
    return repo


@pytest.fixture(scope="module")
def dvc_repo(tmp_path_factory):
    repo = copy_repo(tmp_path_factory.mktemp("dvc"), tiny_params())
    run(["dvc", "repro"], cwd=repo)
    return repo


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
    for png in ("plots/f2l_table.png", "plots/synthetic_samples.png"):
        assert (snakemake_repo / png).stat().st_size > 10_000
    metrics = json.loads((snakemake_repo / "metrics/gkd.json").read_text())
    assert set(metrics["per_class"]["fog"]) == {"road", "sidewalk", "building", "vegetation", "sky", "car", "person",
                                                "pole"}
    assert (snakemake_repo / "logs/gkd/stage1/metrics.json").is_file()  # dvclive training curves
    # nothing left to do afterwards
    assert "Nothing to be done" in run(["snakemake", "--cores", "all", "results/f2l_table.csv"],
                                       cwd=snakemake_repo).stderr


def test_dvc_repro_gives_the_same_bytes_and_is_then_a_noop(dvc_repo, snakemake_repo):
    check_table(dvc_repo / "results/f2l_table.csv")
    # same params, same commands → identical metrics through either front-end
    for name in ("teacher", "student_only", "gkd"):
        assert (dvc_repo / f"metrics/{name}.json").read_text() == (snakemake_repo / f"metrics/{name}.json").read_text()
    start = time.time()
    out = run(["dvc", "repro"], cwd=dvc_repo).stdout
    assert "didn't change, skipping" in out and "Running stage" not in out
    assert time.time() - start < 30


def test_dvc_exp_run_with_another_student_reruns_only_student_stages(dvc_repo):
    out = run(["dvc", "exp", "run", "-S", "student=vit_s"], cwd=dvc_repo).stdout
    ran = {line.split("'")[1] for line in out.splitlines() if line.startswith("Running stage")}
    assert ran == {"student_weights", "distill@gkd", "adapt@gkd", "train@student_only", "evaluate@gkd",
                   "evaluate@student_only", "report"}, ran
    show = run(["dvc", "exp", "show", "--json"], cwd=dvc_repo).stdout
    assert "metrics/gkd.json" in show and "vit_s" in show
