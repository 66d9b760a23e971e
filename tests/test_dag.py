"""The two DAG declarations (Snakemake rules, generated dvc.yaml) must never drift apart."""
from __future__ import annotations

import re
import shutil
import subprocess

import pytest

from conftest import ROOT, copy_repo, run, tiny_params


def test_committed_dvc_yaml_is_current():
    proc = run(["gkd", "dag", "--check"], cwd=ROOT, check=False)
    assert proc.returncode == 0, proc.stderr


def snakemake_jobs(repo, targets) -> dict[str, dict]:
    """Every job of a forced dry run: name (rule or rule@method) → shell command, inputs, outputs."""
    out = run(["snakemake", "--dry-run", "--forceall", "--printshellcmds", *targets], cwd=repo).stdout
    jobs, job = {}, None
    for line in out.splitlines():
        m = re.match(r"^(?:local)?rule (\w+):$", line)
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
            name = job["rule"] + (f"@{job['wildcards']['method']}" if "method" in job["wildcards"] else "")
            jobs[name] = {"cmd": cmd, "deps": job["input"], "outs": job["output"]}
            job = None
    return jobs


def dvc_stages(repo) -> dict[str, dict]:
    from dvc.dependency.param import ParamsDependency
    from dvc.repo import Repo
    with Repo(str(repo)) as r:  # params are compared by test_params_keys_agree
        return {s.name: {"cmd": s.cmd, "deps": {str(d.def_path) for d in s.deps if not isinstance(d, ParamsDependency)},
                               "outs": {str(o.def_path) for o in s.outs}} for s in r.index.stages}


DEFAULT_TARGETS = ["results/f2l_table.csv", "results/f2f_table.csv", "plots/qualitative.png"]


@pytest.mark.parametrize("variant", ["params.yaml", "tiny+vit_s", "params.yaml+ablation"])
def test_snakemake_and_dvc_declare_the_same_dag(tmp_path, variant):
    params = tiny_params() if variant.startswith("tiny") else None
    if params is not None:
        params["student"] = "vit_s"
    repo = copy_repo(tmp_path, params)
    targets = list(DEFAULT_TARGETS)
    if variant.endswith("ablation"):
        run(["gkd", "dag", "--ablation"], cwd=repo)
        targets.append("results/ablation_table.csv")
    smk, dvc = snakemake_jobs(repo, targets), dvc_stages(repo)
    assert sorted(smk) == sorted(dvc)
    expected = {"prepare", "teacher_features", "distill@gkd", "adapt@gkd", "train@student_only", "report",
                "f2f_student_weights", "f2f_distill@gkd", "f2f_report", "qualitative"}
    if variant.endswith("ablation"):
        expected |= {"ablation_distill@gkd_no_mask", "ablation_adapt@gkd_finetune", "ablation_report"}
    assert expected <= set(dvc), expected - set(dvc)
    for name in dvc:
        assert smk[name] == dvc[name], name


def test_snakemake_plan_is_cached_per_params_and_code(tmp_path):
    """The registry-derived plan is recomputed when params change and reused otherwise."""
    import json
    from gkd import dag
    from gkd.config import from_dict
    cache = tmp_path / "plan.json"
    cfg = from_dict(tiny_params())
    assert dag.cached_plan(cfg, cache, ablation=True) == dag.plan(cfg, ablation=True)
    stored = json.loads(cache.read_text())
    stored["plan"]["groups"]["f2l"] = {"marker": ["reused"]}
    cache.write_text(json.dumps(stored))
    assert dag.cached_plan(cfg, cache, ablation=True)["groups"]["f2l"] == {"marker": ["reused"]}
    params = tiny_params()
    params["methods"] = ["student_only", "vanilla_kd", "gkd"]
    other = from_dict(params)
    plan = dag.cached_plan(other, cache, ablation=True)
    assert plan == dag.plan(other, ablation=True) and plan["groups"]["f2l"]["kd"] == ["vanilla_kd"]


def test_noop_snakemake_parse_imports_no_torch(tmp_path):
    """Torch is ~2 s of a no-op run; once the plan is cached, parsing the workflow must not import it."""
    import os
    repo = copy_repo(tmp_path, tiny_params())
    env = {**os.environ, "PYTHONPROFILEIMPORTTIME": "1"}

    def imports_torch():
        proc = subprocess.run(["snakemake", "--dry-run", "--cores", "1"], cwd=repo, env=env,
                              capture_output=True, text=True, timeout=300, check=True)
        return any(re.search(r"\|\s+torch$", line) for line in proc.stderr.splitlines())
    assert imports_torch()          # first parse: the plan is computed from the method registry
    assert not imports_torch()      # cached: same params, same code


def test_snakemake_config_overrides_selectors_only(tmp_path):
    """`--config student=vit_s` swaps the preset in every job; any other key is one clear error."""
    repo = copy_repo(tmp_path, tiny_params())
    out = run(["snakemake", "--dry-run", "--printshellcmds", "results/f2l_table.csv", "--config", "student=vit_s"],
              cwd=repo).stdout
    assert "--student vit_s" in out and "models/students/vit_s" in out and "--student vit_t6" not in out
    bad = run(["snakemake", "--dry-run", "results/f2l_table.csv", "--config", "seed=7"], cwd=repo, check=False)
    assert bad.returncode != 0
    assert "--config may override only the selectors benchmark, teacher, student; edit params.yaml for: seed" \
        in bad.stdout + bad.stderr
