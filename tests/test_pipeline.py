"""The real DAG, end to end, through both front-ends on the tiny config (the `.test` idea)."""
from __future__ import annotations

import json
import subprocess
import sys
import time

import pandas as pd
import pytest

from conftest import ROOT, copy_workspace, run, snakemake_job_names

pytestmark = pytest.mark.slow
# outputs are namespaced by benchmark / teacher / student (tests/tiny.yaml's selectors)
TEACHER_NS = "synthetic/tiny_vfm"
NS, F2F_NS = f"{TEACHER_NS}/vit_t6", f"{TEACHER_NS}/tiny_vfm_s"


@pytest.fixture(scope="module")
def snakemake_repo(tiny_dag, tmp_path_factory):
    """A copy of the session's Snakemake run of the whole tiny DAG (tests/conftest.py: F2L, F2F, the figure)."""
    return copy_workspace(tiny_dag, tmp_path_factory.mktemp("smk") / "repo")


@pytest.fixture(scope="module")
def dvc_repo(tiny_dag, tmp_path_factory):
    """Another copy, handed to DVC as the README says (`dvc commit -f` records what Snakemake built). DVC runs
    stages itself below (another student's experiment, the budget pipeline), and the two front-ends' bytes are
    compared where both ran the same stages."""
    repo = copy_workspace(tiny_dag, tmp_path_factory.mktemp("dvc") / "repo")
    run(["dvc", "commit", "-f"], cwd=repo)
    return repo


def check_table(path):
    df = pd.read_csv(path)
    assert df["Method"].tolist() == ["Teacher", "Student-only", "+GKD"]
    assert df.columns.tolist() == ["Method", "Params (M)", "city", "night", "fog", "rain", "snow", "Avg",
                                   "Avg ± images (95 %)", "Avg sd over seeds", "runs", "Avg sd over student inits", "draws",
                                   "sim (source val)"]
    scores = df[["city", "night", "fog", "rain", "snow", "Avg", "sim (source val)"]].to_numpy()
    assert ((scores >= 0) & (scores <= 100)).all()
    assert (df["Avg ± images (95 %)"] >= 0).all() and (df["Avg ± images (95 %)"] < 20).all()
    # the committed reference spread (measured on the default config) is looked up by row label only
    ref = pd.read_csv(ROOT / "results/reference_spread.csv").set_index("Method")
    for method, runs, sd, draws, init_sd in zip(df["Method"], df["runs"], df["Avg sd over seeds"], df["draws"],
                                                df["Avg sd over student inits"]):
        expected = ref.loc[method, ["runs", "sd", "init_draws", "init_sd"]] if method in ref.index else [None] * 4
        assert all((pd.isna(a) and pd.isna(b)) or a == b for a, b in zip((runs, sd, draws, init_sd), expected))
    assert abs(df["Avg"] - df[["city", "night", "fog", "rain", "snow"]].mean(axis=1)).max() < 0.02
    return df


def test_snakemake_runs_the_whole_dag(snakemake_repo):
    check_table(snakemake_repo / "results/f2l_table.csv")
    f2f = pd.read_csv(snakemake_repo / "results/f2f_table.csv")
    assert f2f["Method"].tolist() == ["Teacher", "+GKD"]
    for png in (f"plots/{NS}/f2l_table.png", f"plots/{NS}/f2l_radar.png", f"plots/{F2F_NS}/f2f_table.png",
                f"plots/{NS}/qualitative.png", "plots/synthetic_samples.png"):
        assert (snakemake_repo / png).stat().st_size > 10_000
    fidelity = pd.read_csv(snakemake_repo / "results/stage1_fidelity.csv")
    assert set(fidelity["domain"]) == {"sim", "generic", "city", "night", "fog", "rain", "snow"}
    assert set(fidelity["term"]) == {"token", "fea", "patch", "probe_patch", "cka_teacher", "cka_init"}
    assert set(fidelity["phase"]) == {"1a", "1b"}
    losses = fidelity[fidelity["term"].isin(["token", "fea", "patch"])]
    probe = fidelity[fidelity["term"] == "probe_patch"]
    cka = fidelity[fidelity["term"].str.startswith("cka")]
    assert ((cka["r2"] >= 0) & (cka["r2"] <= 1 + 1e-6)).all()
    assert (losses["baseline"] > 0).all() and fidelity["r2"].notna().all()
    assert probe["r2_init"].notna().all()  # the linear probe beside the heads' terms, before and after stage 1
    assert set(map(tuple, probe[["phase", "domain"]].values)) == set(map(tuple, losses[["phase", "domain"]].values))
    assert (snakemake_repo / f"plots/{NS}/stage1_fidelity.png").stat().st_size > 10_000
    # every student row's agreement with the teacher's segmenter on held-out generic, the module's own value
    from gkd.agreement import TeacherAgreement
    agreement = pd.read_csv(snakemake_repo / "results/f2l_agreement.csv").set_index("Method")
    assert agreement.index.tolist() == ["Student-only", "+GKD"]
    assert agreement.columns.tolist() == ["teacher_agreement", "teacher_agreement (sim val, control)"]
    assert ((agreement >= 0) & (agreement <= 100)).all().all()
    check = TeacherAgreement(snakemake_repo / f"models/{TEACHER_NS}/teacher_task", snakemake_repo / "data/prepared/synthetic")
    assert check.of(snakemake_repo / f"models/{NS}/gkd/stage2") == agreement.loc["+GKD", "teacher_agreement"]
    f2f_agreement = pd.read_csv(snakemake_repo / f"results/{F2F_NS}/f2f_agreement.csv")
    assert f2f_agreement["Method"].tolist() == ["+GKD"]
    metrics = json.loads((snakemake_repo / f"metrics/{NS}/gkd.json").read_text())
    assert set(metrics["per_class"]["fog"]) == {"road", "sidewalk", "building", "vegetation", "sky", "car", "person",
                                                "pole"}
    assert (snakemake_repo / f"logs/{NS}/gkd/stage1/metrics.json").is_file()  # dvclive training curves
    # nothing left to do afterwards
    assert "Nothing to be done" in run(["snakemake", "--cores", "all"], cwd=snakemake_repo).stderr


def test_init_draw_redraws_the_student_and_pairs_each_method_with_the_reference(snakemake_repo, tmp_path):
    """benchmarks/init_draw.py: draw 0 is the DAG's own (read, not rerun), draw 1 a new student_weights and the
    methods' stages on it; a second call reruns nothing."""
    script = [sys.executable, str(ROOT / "benchmarks" / "init_draw.py"), "--draws", "0", "1", "--methods",
              "student_only", "gkd", "--reference", "student_only", "--work", str(tmp_path / "work"),
              "--out", str(tmp_path / "init_draw.json"), "--spread", str(tmp_path / "spread.csv")]
    (tmp_path / "spread.csv").write_text("Method,sd,runs,mean,measured\n+GKD,3.0,5,12.0,by hand\n")
    first = run(script, cwd=snakemake_repo).stdout
    assert "draw 1: student_weights" in first and "draw 1: distill-gkd" in first and "draw 0:" not in first
    result = json.loads((tmp_path / "init_draw.json").read_text())
    dag_runs = {m: json.loads((snakemake_repo / f"metrics/{NS}/{m}.json").read_text())["avg"] for m in ("student_only", "gkd")}
    assert {m: result["methods"][m]["avg"]["0"] for m in dag_runs} == {m: round(v, 4) for m, v in dag_runs.items()}
    drawn = (tmp_path / "work/init1/student/backbone.safetensors").read_bytes()
    assert drawn != (snakemake_repo / "models/synthetic/students/vit_t6/backbone.safetensors").read_bytes()
    spread = pd.read_csv(tmp_path / "spread.csv").set_index("Method")  # the row kept, the method added
    assert spread.loc["+GKD", "sd"] == 3.0 and spread.loc["+GKD", "init_sd"] == result["methods"]["gkd"]["sd"]
    assert spread.loc["Student-only", "init_draws"] == 2 and pd.isna(spread.loc["Student-only", "sd"])
    paired = result["paired"]["student_only"]["gkd"]
    assert set(paired["per_draw"]) == {"0", "1"} and paired["ci95"][0] <= paired["mean"] <= paired["ci95"][1]
    again = run(script, cwd=snakemake_repo).stdout
    assert "draw 1:" not in again and json.loads((tmp_path / "init_draw.json").read_text())["methods"] == result["methods"]


def test_init_draw_refuses_an_unknown_method_before_running_anything(tmp_path):
    proc = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "init_draw.py"), "--draws", "1", "--methods",
                           "student_frozen", "gkd_typo", "--work", str(tmp_path / "w")], cwd=ROOT,
                          capture_output=True, text=True)
    assert proc.returncode == 2 and "unknown method 'gkd_typo'; choose from [" in proc.stderr
    assert not (tmp_path / "w").exists()


def test_a_snakemake_workspace_is_handed_to_dvc_with_one_commit(dvc_repo):
    """After Snakemake built the whole DAG, `dvc commit -f` records it: `dvc repro` has nothing to do."""
    check_table(dvc_repo / "results/f2l_table.csv")
    start = time.time()
    out = run(["dvc", "repro"], cwd=dvc_repo).stdout
    assert "didn't change, skipping" in out and "Running stage" not in out, out
    assert time.time() - start < 30


def test_a_param_change_reruns_exactly_the_stages_that_read_it(snakemake_repo, dvc_repo):
    """Both front-ends see the same params per stage: change one method knob, ask each what it affects.

    DVC names the stages whose params changed; Snakemake's `--summary` marks the outputs whose recorded
    params differ (its dry run stops looking at params once an upstream job reruns, and
    `--list-changes params` of Snakemake 9.27 lists unchanged files too).
    """
    import yaml
    from dvc.repo import Repo
    expected = {"distill-gkd", "adapt-gkd", "f2f-distill-gkd", "f2f-adapt-gkd"}
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
                changed["dvc"] = set(json.loads(run(["dvc", "status", "dvc.yaml", "--json"], cwd=repo).stdout))
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
    assert not (clone / "features/synthetic/tiny_vfm").exists() and not (clone / f"models/{NS}/gkd/stage1").exists()
    run(["dvc", "pull"], cwd=clone)
    status = run(["dvc", "status"], cwd=clone).stdout
    assert "up to date" in status, status
    out = run(["dvc", "repro"], cwd=clone).stdout
    assert "Running stage" not in out, out
    for rel in (f"features/{TEACHER_NS}/train/tokens-00000.npy", f"models/{NS}/gkd/stage1/backbone.safetensors",
                f"models/{TEACHER_NS}/teacher_task/model.safetensors"):
        assert (clone / rel).read_bytes() == (dvc_repo / rel).read_bytes(), rel


# what the default student's run and the other student's share, and what both front-ends then compare
OTHER = f"{TEACHER_NS}/vit_t"
OTHER_ARTIFACTS = [f"models/{OTHER}/gkd/stage1/backbone.safetensors", f"models/{OTHER}/gkd/stage2/model.safetensors",
                   f"models/{OTHER}/student_only/stage2/model.safetensors"]


def student_files(repo):
    return {p: p.stat().st_mtime_ns for p in (repo / "models" / NS).rglob("*") if p.is_file()}


@pytest.fixture(scope="module")
def dvc_other_student(dvc_repo):
    """`dvc exp run -S student=vit_t` in the handed-over workspace (tiny in tests/tiny.yaml): its output, the
    bytes it wrote, and what the committed run held before. The workspace goes back to the committed run."""
    first = {rel: (dvc_repo / rel).read_bytes() for rel in (f"models/{NS}/gkd/stage2/model.safetensors",
                                                            f"metrics/{NS}/gkd.json", f"results/{NS}/f2l_table.csv")}
    out = run(["dvc", "exp", "run", "-S", "student=vit_t"], cwd=dvc_repo).stdout
    wrote = {rel: (dvc_repo / rel).read_bytes() for rel in OTHER_ARTIFACTS + [f"results/{OTHER}/f2l_table.csv"]}
    wrote["avg"] = {m: json.loads((dvc_repo / f"metrics/{OTHER}/{m}.json").read_text())["domains"]
                    for m in ("student_only", "gkd")}
    wrote["view"] = (dvc_repo / "results/f2l_table.csv").read_bytes()
    show = run(["dvc", "exp", "show", "--json"], cwd=dvc_repo).stdout
    # `dvc exp run` leaves its result in the workspace; back to the committed run for the tests after this one
    run("git checkout -- . && dvc checkout --force", cwd=dvc_repo)
    return out, show, first, wrote


@pytest.fixture(scope="module")
def snakemake_other_student(snakemake_repo):
    """`snakemake --config student=vit_t` beside the default student's outputs: their mtimes before and after."""
    before = student_files(snakemake_repo)
    run(["snakemake", "--cores", "1", "results/f2l_table.csv", "--config", "student=vit_t"], cwd=snakemake_repo)
    return before, student_files(snakemake_repo)


def test_dvc_exp_run_with_another_student_reruns_only_student_stages(dvc_repo, dvc_other_student):
    """Outputs are namespaced by the selectors: another student's experiment writes its own paths and
    results/f2l_table.csv is its table. `dvc exp run` shows one experiment in the workspace at a time (its
    checkout removes outputs the current dvc.lock does not list); the first one comes back from the cache."""
    out, show, first, wrote = dvc_other_student
    ran = {line.split("'")[1] for line in out.splitlines() if line.startswith("Running stage")}
    assert ran == {"student_weights", "distill-gkd", "adapt-gkd", "adapt-student_only", "evaluate-gkd",
                   "evaluate-student_only", "report", "view", "qualitative"}, ran
    assert f"metrics/{OTHER}/gkd.json" in show and "vit_t" in show
    assert wrote["view"] == wrote[f"results/{OTHER}/f2l_table.csv"] != first[f"results/{NS}/f2l_table.csv"]
    assert json.loads(run(["dvc", "status", "dvc.yaml", "--json"], cwd=dvc_repo).stdout) == {}
    assert all((dvc_repo / rel).read_bytes() == data for rel, data in first.items())
    assert (dvc_repo / "results/f2l_table.csv").read_bytes() == first[f"results/{NS}/f2l_table.csv"]


def test_snakemake_runs_of_two_students_coexist(snakemake_repo, snakemake_other_student):
    """`--config student=vit_t` builds beside the default student's outputs; back to the default, only the
    view reruns (to make results/f2l_table.csv its table again)."""
    before, after = snakemake_other_student
    other = snakemake_repo / f"results/{OTHER}/f2l_table.csv"
    assert after == before
    dry = run(["snakemake", "--dry-run", "results/f2l_table.csv"], cwd=snakemake_repo).stdout
    jobs = snakemake_job_names(dry)
    assert jobs == {"view"}, jobs
    run(["snakemake", "--cores", "1", "results/f2l_table.csv"], cwd=snakemake_repo)
    assert (snakemake_repo / "results/f2l_table.csv").read_bytes() == (snakemake_repo / f"results/{NS}/f2l_table.csv").read_bytes()
    assert other.is_file()


def test_both_front_ends_give_the_same_bytes(snakemake_repo, snakemake_other_student, dvc_other_student):
    """The same stages run by Snakemake and by DVC (the other student's student_weights, stage 1, stage 2 and
    evaluation; same params, same commands) write identical weights and scores."""
    wrote = dvc_other_student[3]
    for rel in OTHER_ARTIFACTS:
        assert (snakemake_repo / rel).read_bytes() == wrote[rel], rel
    assert {m: json.loads((snakemake_repo / f"metrics/{OTHER}/{m}.json").read_text())["domains"]
            for m in ("student_only", "gkd")} == wrote["avg"]


def test_editing_a_module_reruns_exactly_the_stages_that_import_it(dvc_repo):
    """Code dependencies are import closures plus what a stage loads by name: the synthetic generator is
    prepare's alone, a real-dataset reader no stage's on `synthetic`, the report module the report stages'."""
    with __import__("dvc.repo", fromlist=["Repo"]).Repo(str(dvc_repo)) as r:
        deps = {s.name: {str(d.def_path) for d in s.deps} for s in r.index.stages if s.path_in_repo == "dvc.yaml"}
    for module in ("src/gkd/data/synthetic.py", "src/gkd/stages/report.py", "src/gkd/fidelity.py"):
        path = dvc_repo / module
        text = path.read_text()
        path.write_text(text + "\n# edited\n")
        try:
            changed = set(json.loads(run(["dvc", "status", "dvc.yaml", "--json"], cwd=dvc_repo).stdout))
        finally:
            path.write_text(text)
        expected = {name for name, files in deps.items() if module in files}
        assert changed == expected and expected, (module, changed, expected)
    assert {n for n, f in deps.items() if "src/gkd/data/synthetic.py" in f} == {"prepare"}
    assert not {n for n, f in deps.items() if "src/gkd/data/mapillary.py" in f}
