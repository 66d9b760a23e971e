"""The two front-ends (Snakemake rules, generated dvc.yaml files) must never drift apart."""
from __future__ import annotations

import re
import shutil
import subprocess

import pytest

from conftest import ROOT, SNAKEMAKE_JOB, copy_repo, run, tiny_params

# runs Snakemake and DVC processes on copies of the repository (no stage runs, but 15-30 s each on 2 cores):
# the full suite's, not the quick tier's
FRONT_ENDS = pytest.mark.slow


def test_committed_dvc_yaml_is_current(capsys, monkeypatch):
    from gkd import cli
    monkeypatch.chdir(ROOT)
    assert cli.main(["dag", "--check"]) == 0, capsys.readouterr().err


@FRONT_ENDS
def test_opt_in_pipelines_exist_once_asked_for(tmp_path):
    """`dvc pull` checks out every stage of every dvc.yaml, so an opt-in pipeline that never ran must not
    be declared: `gkd dag` writes one on `--with`, keeps it current from then on, and `--check` covers it."""
    repo = copy_repo(tmp_path)
    assert not (repo / "pipelines").exists()
    assert "pipelines/seeds/dvc.yaml" in run(["gkd", "dag", "--with", "seeds"], cwd=repo).stdout
    assert not (repo / "pipelines/budget").exists()
    text = (repo / "pipelines/seeds/dvc.yaml").read_text()
    assert "seeds-report:" in text and "distill-gkd-seed1:" in text
    (repo / "pipelines/seeds/dvc.yaml").write_text(text.replace("seeds-report:", "old-report:"))
    assert run(["gkd", "dag", "--check"], cwd=repo, check=False).returncode == 1
    run(["gkd", "dag"], cwd=repo)
    assert (repo / "pipelines/seeds/dvc.yaml").read_text() == text
    bad = run(["gkd", "dag", "--with", "seed"], cwd=repo, check=False)
    assert bad.returncode == 2 and "unknown pipeline seed; choose from seeds, budget, ablation" in bad.stderr


def snakemake_jobs(repo, targets) -> dict[str, dict]:
    """Every job of a forced dry run: rule name → shell command, inputs, outputs."""
    out = run(["snakemake", "--dry-run", "--forceall", "--printshellcmds", *targets], cwd=repo).stdout
    jobs, job = {}, None
    for line in out.splitlines():
        m = SNAKEMAKE_JOB.match(line)
        if m:
            job = {"rule": m.group(1), "input": set(), "output": set(), "wildcards": {}}
            continue
        if job is None:
            continue
        m = re.match(r"^    (input|output|wildcards): (.*)$", line)
        if m:
            items = [x.strip() for x in m.group(2).split(",")]
            if m.group(1) == "wildcards":
                job["wildcards"] = dict(i.split("=", 1) for i in items)
            else:
                job[m.group(1)] = set(items)
        elif line.startswith("Shell command: "):
            cmd = re.sub(r" > \S+ 2>&1$", "", line[len("Shell command: "):])  # log redirection only
            jobs[job["rule"]] = {"cmd": cmd, "deps": job["input"], "outs": job["output"]}
            job = None
    jobs.pop("all", None)  # the target rule, not a stage
    return jobs


def dvc_stages(repo) -> dict[str, dict]:
    """Every stage of every dvc.yaml of the repository (main and opt-in pipelines), paths from the root."""
    import os
    from dvc.dependency.param import ParamsDependency
    from dvc.repo import Repo

    def rel(stage, path):
        return os.path.relpath(os.path.join(stage.wdir, str(path)), str(repo))

    with Repo(str(repo)) as r:  # params are compared by test_a_param_change_reruns_exactly... (test_pipeline)
        return {s.name: {"cmd": s.cmd, "deps": {rel(s, d.def_path) for d in s.deps if not isinstance(d, ParamsDependency)},
                         "outs": {rel(s, o.def_path) for o in s.outs}} for s in r.index.stages}


ALL_TARGETS = ["all", "results/f2l_seeds.csv", "results/f2f_seeds.csv", "results/budget_table.csv",
               "results/ablation_table.csv"]  # all: the F2L and F2F tables and the qualitative figure


@FRONT_ENDS
@pytest.mark.parametrize("variant", ["params.yaml", "tiny+vit_s"])
def test_snakemake_and_dvc_declare_the_same_dag(tmp_path, variant):
    params = tiny_params() if variant.startswith("tiny") else None
    if params is not None:
        params["student"] = "vit_s"
    repo = copy_repo(tmp_path, params)
    run(["gkd", "dag", "--with", "seeds", "budget", "ablation"], cwd=repo)
    smk, dvc = snakemake_jobs(repo, ALL_TARGETS), dvc_stages(repo)
    assert sorted(smk) == sorted(dvc)
    expected = {"prepare", "teacher_features", "distill-gkd", "adapt-gkd", "adapt-student_only", "report",
                "f2f-student_weights", "f2f-distill-gkd", "f2f-report", "qualitative", "distill-gkd-seed1",
                "f2f-evaluate-gkd-seed1", "seeds-report", "f2f-seeds-report", "distill-gkd-x2", "budget-report",
                "ablation-distill-gkd_no_mask", "ablation-adapt-gkd_finetune", "ablation-report", "view", "f2f-view",
                "seeds-view", "f2f-seeds-view", "budget-view", "ablation-view"}
    assert expected <= set(dvc), expected - set(dvc)
    for name in dvc:
        assert smk[name] == dvc[name], name


@FRONT_ENDS
def test_snakemake_takes_overlay_params_files_without_rewriting_params_yaml(tmp_path):
    """`snakemake --configfile tests/tiny.yaml` on an untouched checkout plans the DAG of params.yaml with the
    overlay merged in (the tests' tiny config, without rewriting the repository): every command reads both
    files (that the stages really do: tests/test_invalidation.py)."""
    pristine = copy_repo(tmp_path / "pristine")
    rewritten = copy_repo(tmp_path / "rewritten", tiny_params())
    overlay = snakemake_jobs(pristine, [*ALL_TARGETS, "--configfile", "tests/tiny.yaml"])
    expected = snakemake_jobs(rewritten, ALL_TARGETS)
    assert sorted(overlay) == sorted(expected)
    for name, job in expected.items():
        assert "--params params.yaml " in job["cmd"] or name.endswith("view"), name  # views read no params
        cmd = job["cmd"].replace("--params params.yaml ", "--params params.yaml tests/tiny.yaml ")
        assert overlay[name] == {**job, "cmd": cmd}, name
    assert run(["git", "status", "--porcelain", "params.yaml"], cwd=pristine).stdout == ""


def test_code_dependencies_are_each_stage_modules_import_closure():
    """A stage depends on exactly the package files its module imports (transitively) and the one method or
    adapter it loads by name, not a hand list: on `synthetic` no reader is prepare's code; a method's module is
    its own stages' code (and the reports' that label its row); every stage depends on stages/common.py."""
    from gkd import dag, validate
    closure = set(dag.code_deps("gkd.stages.distill"))
    assert {"src/gkd/stages/distill.py", "src/gkd/stages/common.py", "src/gkd/features.py",
            "src/gkd/data/views.py", "src/gkd/methods/base.py"} <= closure
    assert not {"src/gkd/methods/gkd.py", "src/gkd/methods/proteus.py", "src/gkd/methods/vitkd.py",
                "src/gkd/data/mapillary.py", "src/gkd/stages/adapt.py", "src/gkd/validate.py"} & closure
    cfg = validate.load(ROOT / "params.yaml")
    every = {s.name: s for s in dag.stages(cfg, dag.shapes_of(cfg))}
    by_name = {name: s for name, s in every.items() if s.pipeline == "main"}
    assert "src/gkd/methods/gkd.py" in by_name["distill-gkd"].code
    assert "src/gkd/methods/gkd.py" not in by_name["distill-proteus"].code
    using = {name for name, s in by_name.items() if "src/gkd/methods/vitkd.py" in s.code}
    assert using == {"adapt-vitkd", "report"}, using
    using = {name for name, s in by_name.items() if "src/gkd/methods/gkd.py" in s.code}
    assert using == {"distill-gkd", "adapt-gkd", "f2f-distill-gkd", "f2f-adapt-gkd", "report", "f2f-report",
                     "qualitative"}, using
    assert not [name for name, s in by_name.items() if "src/gkd/data/mapillary.py" in s.code]  # synthetic
    assert "src/gkd/data/synthetic.py" in by_name["prepare"].code
    assert "src/gkd/pretrain.py" in dag.code_deps("gkd.stages.student_weights")
    assert {"src/gkd/plots.py", "src/gkd/stages/report.py"} <= set(dag.code_deps("gkd.stages.report"))
    figures = {n for n, s in every.items() if "src/gkd/plots.py" in s.code}
    assert figures == {n for n in every if n.endswith("report") or n == "qualitative"}, figures
    variants = {n for n, s in every.items() if "src/gkd/methods/gkd.py" in s.code and n.startswith("ablation-")}
    assert {"ablation-distill-gkd_no_mask", "ablation-adapt-gkd_finetune", "ablation-report"} <= variants


def test_an_empty_f2f_table_plans_the_f2l_one(tmp_path):
    """The README's advice for real benchmarks, `f2f: {methods: []}`: every stage once (no F2F stage, no seed
    run of a setting that does not exist), so the Snakefile builds its rules and `gkd dag` writes dvc.yaml."""
    import yaml
    from gkd import dag, validate
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    params["f2f"]["methods"] = []
    cfg = validate.from_dict(params)
    names = [s.name for s in dag.stages(cfg, dag.shapes_of(cfg))]
    assert len(names) == len(set(names)), sorted(n for n in names if names.count(n) > 1)
    assert "report" in names and not [n for n in names if n.startswith("f2f")]
    assert {f"adapt-gkd-seed{s}" for s in params["seeds"][1:]} <= set(names)


def test_snakemake_method_shapes_are_cached_per_params_and_code(tmp_path):
    """The registry-derived method shapes are recomputed when params change and reused otherwise."""
    import json
    from gkd import dag
    from gkd.config import from_dict
    cache = tmp_path / "shapes.json"
    cfg = from_dict(tiny_params())
    assert dag.cached_shapes(cfg, cache) == dag.shapes_of(cfg)
    stored = json.loads(cache.read_text())
    stored["shapes"]["gkd"] = {"marker": "reused"}
    cache.write_text(json.dumps(stored))
    assert dag.cached_shapes(cfg, cache)["gkd"] == {"marker": "reused"}
    params = tiny_params()
    params["methods"] = ["student_only", "vanilla_kd", "gkd"]
    other = from_dict(params)
    shapes = dag.cached_shapes(other, cache)
    assert shapes == dag.shapes_of(other) and shapes["vanilla_kd"] == {"stage1": False, "teacher": ["teacher_task"]}
    assert shapes["gkd"] == {"stage1": True, "teacher": []}


@FRONT_ENDS
def test_noop_snakemake_parse_imports_no_torch(tmp_path):
    """Torch is ~2 s of a no-op run; once the plan is cached, parsing the workflow must not import it.
    `gkd dag` (in copy_repo) and the Snakefile share that cache."""
    import os
    from gkd import dag
    repo = copy_repo(tmp_path, tiny_params())
    env = {**os.environ, "PYTHONPROFILEIMPORTTIME": "1"}

    def imports_torch():
        proc = subprocess.run(["snakemake", "--dry-run", "--cores", "1"], cwd=repo, env=env,
                              capture_output=True, text=True, timeout=300, check=True)
        return any(re.search(r"\|\s+torch$", line) for line in proc.stderr.splitlines())
    assert not imports_torch()      # `gkd dag` computed the plan for these params and this code
    (repo / dag.SHAPES_CACHE).unlink()
    assert imports_torch()          # no cache: the plan is computed from the method registry
    assert not imports_torch()      # cached: same params, same code


@FRONT_ENDS
def test_snakemake_config_overrides_selectors_only(tmp_path):
    """`--config student=vit_s` swaps the preset in every job; any other key is one clear error."""
    repo = copy_repo(tmp_path, tiny_params())
    out = run(["snakemake", "--dry-run", "--printshellcmds", "results/f2l_table.csv", "--config", "student=vit_s"],
              cwd=repo).stdout
    assert "--student vit_s" in out and "models/synthetic/students/vit_s" in out and "--student vit_t6" not in out
    bad = run(["snakemake", "--dry-run", "results/f2l_table.csv", "--config", "seed=7"], cwd=repo, check=False)
    assert bad.returncode != 0
    assert ("--config may override only the selectors benchmark, teacher, student; edit params.yaml or an overlay "
            "file given with --configfile for: seed") in bad.stdout + bad.stderr
