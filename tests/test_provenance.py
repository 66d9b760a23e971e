"""Provenance records and the workspace comparison (gkd.provenance, `gkd compare`): no pipeline run needed."""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from gkd import provenance
from gkd.cli import main as cli


def test_folder_digest_is_the_sorted_concatenation_and_skips_snakemake_markers(tmp_path):
    (tmp_path / "b").mkdir()
    (tmp_path / "a.bin").write_bytes(b"first")
    (tmp_path / "b" / "c.bin").write_bytes(b"second")
    (tmp_path / ".snakemake_timestamp").write_bytes(b"")
    d = provenance.digest(tmp_path)
    assert d["sha256"] == hashlib.sha256(b"firstsecond").hexdigest()
    assert set(d["files"]) == {"a.bin", "b/c.bin"}
    assert d["files"]["b/c.bin"] == hashlib.sha256(b"second").hexdigest()
    assert provenance.digest(tmp_path / "missing") == {"missing": True}


def test_an_untouched_digest_is_reused_and_a_rewritten_file_is_read_again(tmp_path):
    f = tmp_path / "x"
    f.write_bytes(b"one")
    first = provenance.digest(tmp_path)
    fake = dict(first, sha256="0" * 64)  # same stat: trusted without reading
    assert provenance.digest(tmp_path, fake)["sha256"] == "0" * 64
    f.write_bytes(b"two!")  # another size: the stat no longer matches
    assert provenance.digest(tmp_path, fake)["sha256"] == hashlib.sha256(b"two!").hexdigest()


def _stage(ws: Path, name: str, inputs: list[str], outputs: dict[str, bytes], threads: int = 2,
           capability: str = "AVX2") -> None:
    """Write outputs and a record of a fake stage in workspace ``ws`` (cwd-relative paths, as stages do)."""
    cwd = os.getcwd()
    os.chdir(ws)
    try:
        for path, content in outputs.items():
            Path(path).parent.mkdir(parents=True, exist_ok=True)
            Path(path).write_bytes(content)
        rec = provenance.build_record(f"gkd.stages.{name}", ["--out", *outputs], {"in": inputs},
                                      {"out": list(outputs)}, [], {"seed": 0, "threads": threads})
        rec["env"]["cpu_capability"], rec["env"]["threads"] = capability, threads
        provenance.write_record(rec)
    finally:
        os.chdir(cwd)


def test_compare_names_the_first_stage_whose_outputs_differ_with_equal_inputs(tmp_path, capsys):
    a, b = tmp_path / "a", tmp_path / "b"
    for ws, init, cap in ((a, b"init-avx2", "AVX2"), (b, b"init-avx512", "AVX512")):
        ws.mkdir()
        _stage(ws, "prepare", [], {"data/d.bin": b"data"}, capability=cap)
        _stage(ws, "student_weights", ["data/d.bin"], {"models/init.bin": init}, capability=cap)
        _stage(ws, "distill", ["data/d.bin", "models/init.bin"], {"models/s1.bin": init + b"+distilled"},
               capability=cap)
    rows = provenance.compare(a, b)
    verdicts = {r.output: r.verdict for r in rows}
    assert verdicts == {"data/d.bin": "same outputs", "models/init.bin": "DIVERGES (inputs equal)",
                        "models/s1.bin": "inputs differ"}
    assert [r.output for r in rows] == ["data/d.bin", "models/init.bin", "models/s1.bin"]  # dependency order
    first = provenance.first_divergence(rows)
    assert first.output == "models/init.bin" and "cpu_capability: AVX2 vs AVX512" in first.env_differences
    assert cli(["compare", str(a), str(b)]) == 1
    printed = capsys.readouterr().out
    assert "first divergence: models/init.bin" in printed and "because: input models/init.bin" in printed


def test_compare_with_a_bundle_from_another_machine_and_identical_workspaces(tmp_path, capsys):
    a, b = tmp_path / "a", tmp_path / "b"
    for ws in (a, b):
        ws.mkdir()
        _stage(ws, "prepare", [], {"data/d.bin": b"data"})
    bundle = tmp_path / "b.json"
    assert cli(["compare", str(b), "--save", str(bundle)]) == 0
    assert "stat" not in json.dumps(json.loads(bundle.read_text()))  # no machine-local file times in a bundle
    assert cli(["compare", str(a), str(bundle)]) == 0
    assert "every recorded stage gave the same outputs" in capsys.readouterr().out
    # a params difference makes the inputs differ, threads alone do not (they are environment)
    _stage(b, "prepare", [], {"data/d.bin": b"other"}, threads=1)
    rows = provenance.compare(a, b)
    assert rows[0].verdict == "DIVERGES (inputs equal)" and "threads: 2 vs 1" in rows[0].env_differences


def test_a_workspace_without_records_is_one_clear_error(tmp_path, capsys):
    (tmp_path / "a").mkdir()
    assert cli(["compare", str(tmp_path / "a"), str(tmp_path / "a")]) == 2
    assert "no provenance records" in capsys.readouterr().err


@pytest.mark.slow  # runs the prepare stage
def test_a_stage_run_writes_its_record_with_hashes_versions_and_cpu(tmp_path):
    """A real stage (prepare, tiny config) through its CLI: the record names its outputs' hashes, the code files
    of its import closure, the versions and the CPU capability."""
    root = Path(__file__).resolve().parents[1]
    shutil.copy(root / "params.yaml", tmp_path)
    shutil.copy(root / "tests" / "tiny.yaml", tmp_path)
    env = dict(os.environ, PYTHONPATH=str(root / "src"))
    subprocess.run([sys.executable, "-m", "gkd.stages.prepare", "--params", "params.yaml", "tiny.yaml", "--out",
                    "data/prepared/synthetic"], cwd=tmp_path, env=env, check=True, capture_output=True)
    rec = json.loads((tmp_path / "logs/provenance/data/prepared/synthetic.json").read_text())
    assert rec["module"] == "gkd.stages.prepare"
    out = rec["outputs"]["data/prepared/synthetic"]
    assert out["sha256"] == provenance.digest(tmp_path / "data/prepared/synthetic")["sha256"]
    assert "src/gkd/data/synthetic.py" in rec["code"] and "src/gkd/stages/prepare.py" in rec["code"]
    assert "src/gkd/data/mapillary.py" not in rec["code"]  # the code it ran: the synthetic adapter, no reader
    assert set(provenance.PACKAGES) <= set(rec["env"]["packages"]) and rec["env"]["packages"]["torch"]
    assert rec["env"]["cpu_capability"] and rec["env"]["threads"] == 1  # tiny.yaml: threads 1
    assert set(rec["params_files"]) == {"params.yaml", "tiny.yaml"}


@pytest.mark.parametrize("dirty", [False, True])
def test_git_state_says_commit_and_dirty(tmp_path, dirty):
    run = lambda *a: subprocess.run(["git", *a], cwd=tmp_path, check=True, capture_output=True)  # noqa: E731
    run("init", "-q")
    (tmp_path / "src").mkdir()
    (tmp_path / "src" / "f.py").write_text("x")
    (tmp_path / "params.yaml").write_text("seed: 0")
    run("add", "src/f.py", "params.yaml")
    run("-c", "user.email=t@t", "-c", "user.name=t", "commit", "-qm", "c")
    (tmp_path / "params.yaml").write_text("seed: 1")  # params are DVC's and Snakemake's to track, not code
    if dirty:
        (tmp_path / "src" / "f.py").write_text("y")
    state = provenance.git_state(tmp_path)
    assert len(state["commit"]) == 40 and state["dirty"] is dirty
    (tmp_path / "src" / "new.py").write_text("z")  # a new source file is a code change too
    assert provenance.git_state(tmp_path)["dirty"] is True


def test_git_state_outside_a_checkout_is_unknown(tmp_path):
    assert provenance.git_state(tmp_path) == {"commit": None, "dirty": None}


def test_the_report_refuses_rows_of_uncommitted_code_unless_allowed_and_names_the_commits():
    from gkd.errors import ConfigError
    from gkd.stages.report import provenance_footer
    clean = {"provenance": {"commit": "a" * 40, "dirty": False}}
    older = {"provenance": {"commit": "b" * 40, "dirty": False}}
    dirty = {"provenance": {"commit": "a" * 40, "dirty": True}}
    assert provenance_footer([clean, clean], [Path("x"), Path("y")], False) == "rows made at commit aaaaaaaaaa"
    assert provenance_footer([clean, older, clean], [Path("x")] * 3, False) == \
        "rows made at commit aaaaaaaaaa (2 rows), bbbbbbbbbb (1 rows)"
    with pytest.raises(ConfigError, match="uncommitted code .*y.json"):
        provenance_footer([clean, dirty], [Path("x.json"), Path("y.json")], False)
    assert provenance_footer([clean, dirty], [Path("x"), Path("y")], True).endswith("1 rows by uncommitted code (allowed)")
