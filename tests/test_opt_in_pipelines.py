"""The opt-in pipelines on the tiny DAG: the multi-seed tables through Snakemake and the budget curve through
DVC, each in its own copy of the session's Snakemake run (tests/conftest.py). That both front-ends declare both
pipelines identically is tests/test_dag.py's business; that identical declarations give identical bytes,
tests/test_pipeline.py's."""
from __future__ import annotations

import json
import subprocess
import sys

import pandas as pd
import pytest
import torch

from conftest import ROOT, copy_workspace, run
from gkd import agreement

pytestmark = pytest.mark.slow
NS = "synthetic/tiny_vfm/vit_t6"
TEACHER_NS = "synthetic/tiny_vfm"


@pytest.fixture(scope="module")
def seeds_repo(tiny_dag, tmp_path_factory):
    repo = copy_workspace(tiny_dag, tmp_path_factory.mktemp("seeds") / "repo")
    run(["snakemake", "--cores", "1", "results/f2l_seeds.csv"], cwd=repo)  # F2F's seeds table: the same stage with `--setting f2f`, not built here
    return repo


@pytest.fixture(scope="module")
def budget_repo(tiny_dag, tmp_path_factory):
    repo = copy_workspace(tiny_dag, tmp_path_factory.mktemp("budget") / "repo")
    run(["dvc", "commit", "-f"], cwd=repo)            # the handover (README), then DVC runs the 2x budget
    run(["gkd", "dag", "--with", "budget"], cwd=repo)  # declared once asked for (see test_dag)
    out = run(["dvc", "repro", "pipelines/budget/dvc.yaml"], cwd=repo).stdout
    ran = {line.split("'")[1].rsplit(":", 1)[-1] for line in out.splitlines() if line.startswith("Running stage")}
    # the 1x rows are the main pipeline's, not rerun
    assert ran == {f"{kind}-{m}-x2" for kind in ("adapt", "evaluate") for m in ("student_only", "gkd")} | \
        {"distill-gkd-x2", "budget-report", "budget-view"}, ran
    return repo


def test_seeds_table(seeds_repo):
    smk = seeds_repo
    seeds = pd.read_csv(smk / "results/f2l_seeds.csv")
    assert seeds["Method"].tolist() == ["Teacher", "Student-only", "+GKD"]
    assert seeds["n"].tolist() == [1, 2, 2]
    only = seeds.set_index("Method").loc["Student-only"]
    assert only["CI low"] <= only["GKD − method"] <= only["CI high"]
    # the seeds differ (a seed reaches the student-side stages) and seed 0 is the single-seed table's run
    runs = [json.loads((smk / p).read_text())["avg"] for p in (f"metrics/{NS}/gkd.json", f"metrics/{NS}/seed1/gkd.json")]
    assert runs[0] != runs[1]
    assert abs(seeds.set_index("Method").loc["+GKD", "Avg mean"] - sum(runs) / 2) < 0.01
    assert (smk / f"plots/{NS}/f2l_seeds.png").stat().st_size > 10_000
    # the spread each row of the single-seed table can show, and the label-free check of every stage-1 run
    spread = pd.read_csv(smk / f"results/{NS}/f2l_spread.csv").set_index("Method")
    assert spread.loc["+GKD", "runs"] == 2 and abs(spread.loc["+GKD", "sd"] - pd.Series(runs).std()) < 0.01
    check = pd.read_csv(smk / f"results/{NS}/f2l_stage1_check.csv")
    assert check["seed"].tolist() == [0, 1] and check["Avg"].round(4).tolist() == pd.Series(runs).round(4).tolist()
    assert ((check["cka_init"] > 0) & (check["cka_init"] <= 1 + 1e-6)).all()
    # each run's segmenter against the teacher's on held-out generic: the teacher agrees with itself fully,
    # a student less, and the check CSV holds what gkd.agreement measures for that run's stage-2 folder
    against = agreement.TeacherAgreement(smk / f"models/{TEACHER_NS}/teacher_task", smk / "data/prepared/synthetic")
    assert against.of(smk / f"models/{TEACHER_NS}/teacher_task") == pytest.approx(100.0)
    assert check["teacher_agreement"].tolist() == pytest.approx(
        [against.of(smk / f"models/{NS}/{p}gkd/stage2") for p in ("", "seed1/")], abs=1e-4)
    assert ((check["teacher_agreement"] > 0) & (check["teacher_agreement"] < 100)).all()
    assert check["teacher_agreement (sim val, control)"].between(0, 100).all()
    assert (smk / f"plots/{NS}/f2l_stage1_check.png").stat().st_size > 10_000


def test_seed_agreement_of_the_seeds_runs(seeds_repo, tmp_path):
    """benchmarks/seed_agreement.py on the seeds target's two GKD stage-1 runs: a run against itself agrees
    exactly (CKA 1), two seeds less; each run's Avg is its metrics file's."""
    models = seeds_repo / f"models/{NS}"
    a, b = models / "gkd", models / "seed1/gkd"
    out = tmp_path / "agreement.csv"
    subprocess.run([sys.executable, str(ROOT / "benchmarks/seed_agreement.py"), "--data",
                    str(seeds_repo / "data/prepared/synthetic"), "--out", str(out),
                    "--runs", f"seeds={a}", f"seeds={b}", f"same={a}", f"same={a}"], check=True, capture_output=True)
    per_run = pd.read_csv(out)
    recipes = pd.read_csv(tmp_path / "agreement_recipes.csv").set_index("Method")
    assert recipes.loc["same", "pairwise CKA"] == pytest.approx(1.0, abs=1e-6)
    assert 0 < recipes.loc["seeds", "pairwise CKA"] < 0.9999
    # a run's agreement is within its recipe: run a's in `seeds` is its one pair there, not also `same`'s
    seeds_runs = per_run[per_run["Method"] == "seeds"]
    assert seeds_runs["agreement"].tolist() == pytest.approx([recipes.loc["seeds", "pairwise CKA"]] * 2, abs=1e-4)
    assert per_run["Avg"].tolist()[:2] == [json.loads((seeds_repo / p).read_text())["avg"]
                                          for p in (f"metrics/{NS}/gkd.json", f"metrics/{NS}/seed1/gkd.json")]
    one = subprocess.run([sys.executable, str(ROOT / "benchmarks/seed_agreement.py"), "--data", str(seeds_repo),
                          "--runs", f"seeds={a}"], capture_output=True, text=True)
    assert one.returncode != 0 and "seeds has one" in one.stderr


def test_teacher_agreement_of_the_seeds_runs(seeds_repo, tmp_path):
    """benchmarks/teacher_agreement.py on the seeds target's two GKD runs measures what the seeds report's check
    does (the same module), reads each run's Avg from its metrics file, and refuses a folder without stage 2."""
    models = seeds_repo / f"models/{NS}"
    out = tmp_path / "teacher_agreement.csv"
    script = [sys.executable, str(ROOT / "benchmarks/teacher_agreement.py"), "--data",
              str(seeds_repo / "data/prepared/synthetic"), "--teacher", str(seeds_repo / f"models/{TEACHER_NS}/teacher_task")]
    subprocess.run(script + ["--out", str(out), "--plot", str(tmp_path / "a.png"),
                             "--runs", f"gkd={models / 'gkd'}", f"gkd={models / 'seed1/gkd'}"], check=True, capture_output=True)
    table = pd.read_csv(out)
    check = pd.read_csv(seeds_repo / f"results/{NS}/f2l_stage1_check.csv")
    assert table["generic_agreement"].tolist() == pytest.approx(check["teacher_agreement"].tolist(), abs=1e-4)
    assert table["sim_agreement"].tolist() == pytest.approx(check["teacher_agreement (sim val, control)"].tolist(), abs=1e-4)
    assert table["Avg"].tolist() == check["Avg"].tolist()
    assert (tmp_path / "a.png").stat().st_size > 10_000
    bad = subprocess.run(script + ["--runs", f"gkd={models / 'gkd' / 'stage1'}"], capture_output=True, text=True)
    assert bad.returncode != 0 and "holds no stage2/model.json" in bad.stderr


def test_budget_table(budget_repo):
    dvc = budget_repo
    budget = pd.read_csv(dvc / "results/budget_table.csv")
    assert budget["budget"].tolist() == [1, 1, 2, 2]
    assert budget.loc[budget["Method"] == "+GKD", "R² fea (sim)"].notna().all()
    # the 1x rows are the main pipeline's runs; the 2x ones trained longer
    steps = [json.loads((dvc / f"models/{NS}/{p}gkd/stage1/backbone.json").read_text())["steps"]
             for p in ("", "budget2/")]
    assert steps[1] == 2 * steps[0], steps
    assert (dvc / f"plots/{NS}/budget_curve.png").stat().st_size > 10_000


def test_stage1_soup_of_the_seeds_runs(seeds_repo, tmp_path):
    """benchmarks/stage1_soup.py on the seeds target's two GKD stage-1 runs: a soup of a run with itself is that
    run (its backbone to the byte, its stage 2 and evaluation to the metric), a soup of two seeds is the mean of
    their tensors; each soup goes through the DAG's adapt and evaluate and is checked label-free."""
    from safetensors.torch import load_file
    models = seeds_repo / f"models/{NS}"
    a, b = models / "gkd", models / "seed1/gkd"
    out, work = tmp_path / "soup.csv", tmp_path / "soups"
    subprocess.run([sys.executable, str(ROOT / "benchmarks/stage1_soup.py"), "--workspace", str(seeds_repo),
                    "--teacher", "tiny_vfm", "--members", str(a), str(a), str(a), str(b), "--k", "2",
                    "--work", str(work), "--out", str(out)], check=True, capture_output=True)
    same, mixed = (load_file(work / f"k2-{g}/gkd/stage1/backbone.safetensors") for g in (0, 1))
    wa, wb = (load_file(m / "stage1/backbone.safetensors") for m in (a, b))
    assert all(torch.equal(same[k], wa[k]) for k in wa)
    assert all(torch.allclose(mixed[k].double(), (wa[k].double() + wb[k].double()) / 2, rtol=1e-6, atol=1e-6)
               for k in wa)
    table = pd.read_csv(out)
    assert table["k"].tolist() == [1, 1, 2, 2]  # each member once, then the soups
    by_run = table.set_index("run")
    assert by_run.loc[str(work / "k2-0/gkd"), "Avg"] == by_run.loc[str(a), "Avg"]
    assert by_run.loc[str(work / "k2-0/gkd"), "generic_cka_teacher"] == pytest.approx(by_run.loc[str(a), "generic_cka_teacher"])
    assert table["generic_cka_init"].between(0, 1 + 1e-6).all() and table["teacher_agreement"].between(0, 100).all()
    summary = pd.read_csv(tmp_path / "soup_summary.csv")
    assert summary["soups"].tolist() == [2] and summary["members' Avg mean"].iloc[0] == pytest.approx(
        table.loc[table["k"] == 1, "Avg"].mean(), abs=0.01)
    bad = subprocess.run([sys.executable, str(ROOT / "benchmarks/stage1_soup.py"), "--workspace", str(seeds_repo),
                          "--teacher", "tiny_vfm", "--members", str(a), str(b), "--k", "3", "--work", str(work)],
                         capture_output=True, text=True)
    assert bad.returncode != 0 and "--k: [3] out of range" in bad.stderr

