"""A change reruns what it affects and nothing else, through both front-ends (issue 22's table).

One complete run of the tiny DAG (Snakemake, handed to DVC with `dvc commit -f`), with five methods — a
plain one, a logit-KD and a feature-KD baseline, and both label-free methods — and the README's `f2f:
{methods: []}` (so that row, "plans and runs the F2L table", is the fixture itself); it widens the session's
run of tests/tiny.yaml's two methods, so only the three added methods' stages and the reports run here. Each
row copies the finished workspace, changes one thing and asks both front-ends what is stale: `dvc status` names
the stages whose own inputs changed, `snakemake -n` every job it would run (those and everything downstream).
"""
from __future__ import annotations

import json

import pytest
import yaml

from conftest import copy_workspace, run, snakemake_job_names

pytestmark = pytest.mark.slow
METHODS = ["student_only", "vanilla_kd", "vitkd", "proteus", "gkd"]
TEACHER = {"prepare", "teacher_weights", "teacher_features", "teacher_task", "evaluate_teacher"}


def stages_of(*methods, kinds=("distill", "adapt", "evaluate")) -> set[str]:
    return {f"{kind}-{m}" for kind in kinds for m in methods} & ALL_STAGES


ALL_STAGES = TEACHER | {"student_weights", "report", "view", "qualitative"} | \
    {f"{k}-{m}" for k in ("adapt", "evaluate") for m in METHODS} | {"distill-proteus", "distill-gkd"}
REPORTS = {"report", "view", "qualitative"}  # qualitative: the figure of student_only, vanilla_kd and gkd


@pytest.fixture(scope="module")
def finished(tiny_dag, tmp_path_factory):
    """The session's Snakemake run of the tiny DAG (tests/conftest.py), widened to METHODS and the README's
    empty F2F table: Snakemake runs the stages the three added methods need and the reports again."""
    repo = copy_workspace(tiny_dag, tmp_path_factory.mktemp("finished") / "repo")
    params = yaml.safe_load((repo / "params.yaml").read_text())
    params["methods"] = METHODS
    params["f2f"]["methods"] = []
    (repo / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    run(["gkd", "dag"], cwd=repo)  # another method list means another generated dvc.yaml
    proc = run(["snakemake", "--cores", "1"], cwd=repo, timeout=1800)  # rule all: the F2L table, the figure
    ran = snakemake_job_names(proc.stdout + proc.stderr)
    assert ran == stages_of("vanilla_kd", "vitkd", "proteus") | REPORTS, ran  # nothing the first run made
    run(["dvc", "commit", "-f"], cwd=repo)   # DVC records what Snakemake built (README: handing over)
    run(["snakemake", "--cores", "1", "--touch"], cwd=repo)  # mtimes in DAG order after DVC's checkout
    assert (repo / "results/f2l_table.csv").read_text().count("\n") == 1 + 1 + len(METHODS)
    assert stale(repo) == {"dvc": set(), "snakemake": set()}
    return repo


def stale(repo, *snakemake_args) -> dict[str, set[str]]:
    dvc = set(json.loads(run(["dvc", "status", "dvc.yaml", "--json"], cwd=repo).stdout))
    dry = run(["snakemake", "--dry-run", *snakemake_args], cwd=repo).stdout
    return {"dvc": dvc, "snakemake": snakemake_job_names(dry)}


def downstream(repo, direct: set[str]) -> set[str]:
    """``direct`` and every stage that reads, transitively, what they write (dvc.yaml)."""
    declared = yaml.safe_load((repo / "dvc.yaml").read_text())["stages"]
    outs = {name: {o if isinstance(o, str) else next(iter(o)) for key in ("outs", "plots", "metrics")
                   for o in s.get(key, [])} for name, s in declared.items()}
    found = set(direct)
    while True:
        more = {name for name, s in declared.items() if name not in found and
                any(d in outs[f] for f in found for d in s.get("deps", []))}
        if not more:
            return found
        found |= more


def workspace(finished, tmp_path):
    return copy_workspace(finished, tmp_path / "ws")


def comment(repo, path: str) -> None:
    with open(repo / path, "a") as fh:
        fh.write("\n# a comment\n")


def set_param(repo, dotted: str, value) -> None:
    params = yaml.safe_load((repo / "params.yaml").read_text())
    node = params
    *parents, leaf = dotted.split(".")
    for key in parents:
        node = node[key]
    node[leaf] = value
    (repo / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))


# change → (the stages whose own inputs changed: `dvc status`, the stages to rerun: `snakemake -n`)
ROWS = {
    "comment in methods/vitkd.py": (lambda r: comment(r, "src/gkd/methods/vitkd.py"),
                                    {"adapt-vitkd", "report"}, stages_of("vitkd") | {"report", "view"}),
    "comment in methods/gkd.py": (lambda r: comment(r, "src/gkd/methods/gkd.py"),
                                  {"distill-gkd", "adapt-gkd", "report", "qualitative"}, stages_of("gkd") | REPORTS),
    "comment in data/mapillary.py": (lambda r: comment(r, "src/gkd/data/mapillary.py"), set(), set()),
    "comment in plots.py": (lambda r: comment(r, "src/gkd/plots.py"), {"report", "qualitative"}, REPORTS),
    "method_configs.vitkd.alpha": (lambda r: set_param(r, "method_configs.vitkd.alpha", 1.0e-5),
                                   {"adapt-vitkd"}, stages_of("vitkd") | {"report", "view"}),
    "adapt.epochs": (lambda r: set_param(r, "adapt.epochs", 2),
                     stages_of(*METHODS, kinds=("adapt",)) | {"teacher_task"},
                     stages_of(*METHODS, kinds=("adapt", "evaluate")) | {"teacher_task", "evaluate_teacher"} | REPORTS),
    "students.vit_t6.depth": (lambda r: set_param(r, "students.vit_t6.depth", 3),
                              {"student_weights", "distill-proteus", "distill-gkd"},
                              ALL_STAGES - TEACHER - {"teacher_weights"}),
    "distill.lr (params.yaml; Snakemake: an overlay)": (lambda r: set_param(r, "distill.lr", 1.0e-4),
                                                         {"distill-proteus", "distill-gkd"},
                                                         stages_of("proteus", "gkd") | REPORTS),
}


@pytest.mark.parametrize("row", list(ROWS))
def test_a_change_reruns_exactly_what_it_affects(finished, tmp_path, row):
    change, direct, rerun = ROWS[row]
    assert downstream(finished, direct) == rerun  # the table's two columns agree with the DAG
    repo = workspace(finished, tmp_path)
    if row.startswith("distill.lr"):  # Snakemake: the overlay, params.yaml untouched; DVC: params.yaml
        (repo / "overlay.yaml").write_text("distill:\n  lr: 1.0e-4\n")
        assert stale(repo, "--configfile", "params.yaml", "overlay.yaml")["snakemake"] == rerun
    change(repo)
    found = stale(repo)
    assert found["dvc"] == direct, (row, found["dvc"] ^ direct)
    assert found["snakemake"] == rerun, (row, found["snakemake"] ^ rerun)
    assert not {"prepare", "teacher_weights", "teacher_features"} & (found["dvc"] | found["snakemake"])
