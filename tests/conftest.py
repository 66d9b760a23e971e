"""Shared fixtures: an offline environment and a tiny copy of the repository for pipeline runs."""
from __future__ import annotations

import fcntl
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
# A job's header line in Snakemake's log of a run or a dry run ("rule distill-gkd:", "localrule all:")
SNAKEMAKE_JOB = re.compile(r"^(?:local)?rule ([\w-]+):$", re.M)

# Hub lookups would hang ~50 s before failing: tests never need the network.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_DATASETS_OFFLINE", "1")
os.environ.setdefault("DVC_NO_ANALYTICS", "1")
os.environ.setdefault("GKD_LOG", "WARNING")


def tiny_params() -> dict:
    from gkd.config import merge
    base = yaml.safe_load((ROOT / "params.yaml").read_text())
    return merge(base, yaml.safe_load((ROOT / "tests" / "tiny.yaml").read_text()))


def copy_repo(dest: Path, params: dict | None = None) -> Path:
    """The committed + untracked (not ignored) files of the repo, as a fresh git repo at ``dest``."""
    files = subprocess.run(["git", "ls-files", "-co", "--exclude-standard"], cwd=ROOT, check=True,
                           capture_output=True, text=True).stdout.split()
    for rel in files:
        src = ROOT / rel
        if src.is_file():
            (dest / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dest / rel)
    if params is not None:  # another method list means another generated dvc.yaml
        (dest / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
        run(["gkd", "dag"], cwd=dest)
    git = ["git", "-c", "user.email=t@example.com", "-c", "user.name=test"]
    subprocess.run(["git", "init", "-q"], cwd=dest, check=True)
    subprocess.run(git + ["add", "-A"], cwd=dest, check=True)
    # a fixed date: two copies of the same files get the same commit, which the metrics' provenance records
    # (so workspaces built side by side by the two front-ends give identical metrics files)
    date = "2026-01-01T00:00:00+00:00"
    fixed = {**os.environ, "GIT_AUTHOR_DATE": date, "GIT_COMMITTER_DATE": date}
    subprocess.run(git + ["commit", "-qm", "copy"], cwd=dest, check=True, env=fixed)
    return dest


def run(cmd: list[str] | str, cwd: Path, timeout: int = 900, check: bool = True) -> subprocess.CompletedProcess:
    proc = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=timeout, shell=isinstance(cmd, str))
    if check and proc.returncode != 0:
        raise AssertionError(f"{cmd} failed ({proc.returncode}):\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}")
    return proc


ALL = ["student_only", "vanilla_kd", "cwd", "afdcd", "vitkd", "proteus", "gkd"]


@pytest.fixture(scope="session")
def ws(tmp_path_factory):
    """Prepared tiny benchmark, teacher, student init, feature cache and teacher_task, in-process."""
    from gkd.stages import prepare, student_weights, teacher_features, teacher_task, teacher_weights
    root = tmp_path_factory.mktemp("ws")
    params = tiny_params()
    params["methods"] = ALL
    params["threads"] = 0
    (root / "params.yaml").write_text(yaml.safe_dump(params))
    p = ["--params", str(root / "params.yaml")]
    data = str(root / "data")
    prepare.main(p + ["--out", data])
    teacher_weights.main(p + ["--data", data, "--out", str(root / "teacher")])
    student_weights.main(p + ["--data", data, "--out", str(root / "student")])
    teacher_features.main(p + ["--data", data, "--teacher-weights", str(root / "teacher"), "--out", str(root / "feat")])
    teacher_task.main(p + ["--data", data, "--teacher-weights", str(root / "teacher"), "--out",
                           str(root / "teacher_task")])
    return root


def built_once(tmp_path_factory, name: str, build) -> Path:
    """A workspace that ``build(path)`` makes once per test session, whichever pytest-xdist worker asks first
    (the others wait on a lock in the directory every worker's base temp shares). Tests copy it, never change it."""
    root = tmp_path_factory.getbasetemp()
    if os.environ.get("PYTEST_XDIST_WORKER"):
        root = root.parent
    dest, done = root / f"built-{name}", root / f"built-{name}.done"
    with open(root / f"built-{name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if not done.is_file():
            shutil.rmtree(dest, ignore_errors=True)  # a build that failed in another worker
            dest.mkdir()
            build(dest)
            done.write_text("")
    return dest


def copy_workspace(src: Path, dest: Path) -> Path:
    """A finished workspace elsewhere: mtimes kept, so neither front-end sees anything stale."""
    return Path(shutil.copytree(src, dest, symlinks=True))


def build_tiny_dag(dest: Path) -> None:
    copy_repo(dest, tiny_params())
    run(["snakemake", "--cores", "1"], cwd=dest, timeout=1800)  # rule all: F2L, F2F tables, qualitative figure


@pytest.fixture(scope="session")
def tiny_dag(tmp_path_factory) -> Path:
    """The whole tiny DAG (tests/tiny.yaml), built by Snakemake once per session; copy it before use."""
    return built_once(tmp_path_factory, "tiny-dag", build_tiny_dag)


@pytest.fixture(scope="session")
def tiny_cfg():
    from gkd.config import from_dict
    return from_dict(tiny_params())


# ---------------------------------------------------------------------------------------------- the quick tier
def pytest_collection_modifyitems(items):
    """A test that needs the ``ws`` workspace runs pipeline stages (its fixture does): it is slow, so
    ``pytest -m "not slow"`` stays the quick tier for someone changing one module.

    The modules that run the front-ends come first: pytest-xdist (``--dist loadscope``, no reorder) hands out
    whole modules in this order, so the longest ones start at once and the short ones fill in beside them."""
    for item in items:
        if "ws" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.slow)
    rank = {name: i for i, name in enumerate(LONGEST_FIRST)}
    items.sort(key=lambda item: rank.get(item.path.stem, len(rank)))  # stable: within a module, file order


# the modules that run the front-ends, roughly longest first (from a run's module durations; not asserted).
# test_pipeline's worker builds the session's tiny DAG (`tiny_dag`) while the other runs test_real_pipeline,
# which needs none of it: the modules that copy the build come after, so no worker waits for it.
LONGEST_FIRST = ["test_pipeline", "test_real_pipeline", "test_invalidation", "test_opt_in_pipelines",
                 "test_folder_dataset", "test_raw_dependency", "test_scaleout", "test_launch", "test_dag", "test_docs",
                 "test_bench"]


@pytest.fixture(autouse=True)
def quick_tests_run_no_stage(request, monkeypatch):
    """In a test not marked slow, starting a pipeline stage in-process is an error (mark the test slow)."""
    if request.node.get_closest_marker("slow") is not None:
        return
    from gkd.stages import common

    def refuse(*args, **kwargs):
        raise AssertionError(f"{request.node.nodeid} runs a pipeline stage but is not marked slow")
    monkeypatch.setattr(common, "setup", refuse)


def snakemake_job_names(log: str) -> set[str]:
    """The jobs a Snakemake log (a run's or a dry run's) names, less the target rule."""
    return set(SNAKEMAKE_JOB.findall(log)) - {"all"}


def snakemake_job_blocks(log: str) -> dict[str, str]:
    """Each job's block of a Snakemake log, from its header line to the next job's: the first per rule."""
    starts = list(SNAKEMAKE_JOB.finditer(log))
    ends = [m.start() for m in starts[1:]] + [len(log)]
    blocks: dict[str, str] = {}
    for header, end in zip(starts, ends):
        blocks.setdefault(header.group(1), log[header.start():end])
    return blocks
