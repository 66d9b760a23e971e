"""What a stage read, what it wrote, and on what: one JSON record per stage run, and the comparison of two runs.

Every stage records (``write_record``, called once the stage succeeded) the sha256 of each input and output,
the sha256 of each source file of the code it ran, the params files, the versions of the packages the
numbers depend on, torch's CPU capability (``AVX2``, ``AVX512``: which kernels it dispatches to) or the
GPU's name, and the number of threads. The record goes to ``logs/provenance/<first output>.json``, not into
the output itself: artifacts stay pure content, so the same arithmetic gives byte-identical artifacts on
every host and through both front-ends, and a DVC cache deduplicates them.

Digests. A file's digest is the sha256 of its bytes; a folder's is the sha256 of its files' bytes
concatenated in sorted path order (Snakemake's empty ``.snakemake_timestamp`` markers left out) — the same
number ``cat $(find DIR -type f | sort) | sha256sum`` gives — and the record keeps each file's digest
too, so a comparison names the file that differs. An input folder is hashed by whoever reads it, but a
consumer reuses its producer's record when the folder has not been touched since (same files, sizes and
modification times), so a 600 GB teacher cache is hashed once, by ``teacher_features``.

``compare(a, b)`` (``gkd compare``) lines up the records of two workspaces (or of a workspace and a
fingerprint bundle another machine exported with ``gkd compare --save``) and names the first stage, in
dependency order, whose outputs differ although its inputs, code and params are equal: where the numbers
themselves diverged. Its environment lines say what differed there (CPU capability, threads, versions).
"""
from __future__ import annotations

import hashlib
import json
import os
import platform
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from importlib import metadata
from typing import Iterable

from gkd import io
from gkd.codegraph import PACKAGE, code_deps

RECORDS = Path("logs/provenance")
PACKAGES = ("torch", "timm", "numpy", "accelerate", "datasets", "safetensors", "torchvision")
SKIP_NAMES = {".snakemake_timestamp"}
SCHEMA = 1


# ---------------------------------------------------------------------------------------------- digests
def _files(path: Path) -> list[Path]:
    if path.is_file():
        return [path]
    return sorted(p for p in path.rglob("*") if p.is_file() and p.name not in SKIP_NAMES)


def file_sha256(path: Path, chunk: int = 1 << 22) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            h.update(block)
    return h.hexdigest()


def _stat_key(path: Path) -> list:
    """What says a folder is untouched since it was hashed: each file's relative path, size and mtime."""
    files = _files(path)
    root = path if path.is_dir() else path.parent
    return [[p.relative_to(root).as_posix(), p.stat().st_size, p.stat().st_mtime_ns] for p in files]


def digest(path: str | os.PathLike, known: dict | None = None) -> dict:
    """{"sha256", "files": {relative path: sha256}, "stat"} of a file or folder ({"missing": true} if absent).

    ``known``: an earlier digest of the same path; reused when its ``stat`` still matches (nothing
    rewritten since), so an unchanged input is not read again."""
    path = Path(path)
    if not path.exists():
        return {"missing": True}
    stat = _stat_key(path)
    if known and known.get("stat") == stat and "sha256" in known:
        return known
    whole = hashlib.sha256()
    per_file = {}
    root = path if path.is_dir() else path.parent
    for p in _files(path):
        h = hashlib.sha256()
        with open(p, "rb") as fh:
            while block := fh.read(1 << 22):
                h.update(block)
                whole.update(block)
        per_file[p.relative_to(root).as_posix()] = h.hexdigest()
    return {"sha256": whole.hexdigest(), "files": per_file, "stat": stat}


# ---------------------------------------------------------------------------------------------- environment
CODE_PATHS = ("src", "workflow", "Snakefile", "pyproject.toml", "constraints.txt")


def git_state(root: Path = Path(".")) -> dict:
    """The commit of the code and whether the code differs from it — a changed or new file among ``CODE_PATHS``;
    params files, metrics and figures change in every pipeline run and are tracked by DVC / Snakemake
    themselves (None where this is no git checkout)."""
    try:
        head = subprocess.run(["git", "rev-parse", "--verify", "--quiet", "HEAD"], cwd=root, capture_output=True,
                              text=True, timeout=10)
        commit = head.stdout.strip() if head.returncode == 0 and head.stdout.strip() else None
        dirty = None
        if commit:
            status = subprocess.run(["git", "status", "--porcelain", "--untracked-files=normal", "--", *CODE_PATHS],
                                    cwd=root, capture_output=True, text=True, timeout=30).stdout
            dirty = bool(status.strip())
    except (OSError, subprocess.SubprocessError):
        commit, dirty = None, None
    return {"commit": commit, "dirty": dirty}


def _version(name: str) -> str | None:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def summary() -> dict:
    """The short form a metrics file carries: commit, whether the code was modified, torch, device, threads."""
    env = environment()
    return {**git_state(), "torch": env["packages"]["torch"],
            "device": env.get("gpu") or f"{env['cpu']} ({env.get('cpu_capability')})", "threads": env.get("threads")}


def environment() -> dict:
    """Versions, CPU capability / GPU, threads: what decides the rounding of the same arithmetic."""
    env = {"python": platform.python_version(), "platform": platform.platform(),
           "packages": {name: _version(name) for name in PACKAGES}, "cpu": cpu_model()}
    torch = sys.modules.get("torch")
    if torch is not None:  # a stage that ran torch work; the torch-free stages record no capability
        env["cpu_capability"] = torch.backends.cpu.get_cpu_capability()
        env["threads"] = torch.get_num_threads()
        env["gpu"] = torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
        env["deterministic_algorithms"] = torch.are_deterministic_algorithms_enabled()
    return env


# ---------------------------------------------------------------------------------------------- records
def record_path(primary_output: str | os.PathLike, root: Path = Path(".")) -> Path:
    return root / RECORDS / f"{Path(primary_output).as_posix().strip('/')}.json"


def _known(path: str) -> dict | None:
    """The digest some earlier stage recorded for ``path`` as its output (for reuse when untouched)."""
    for candidate in (record_path(path),):
        if candidate.is_file():
            try:
                rec = json.loads(candidate.read_text())
            except ValueError:
                return None
            return rec.get("outputs", {}).get(path)
    return None


def _producer_digest(path: str) -> dict | None:
    """Find the record whose outputs list ``path`` (its primary output may be another path)."""
    known = _known(path)
    if known:
        return known
    if RECORDS.is_dir():
        for rec_file in RECORDS.rglob("*.json"):
            try:
                rec = json.loads(rec_file.read_text())
            except ValueError:
                continue
            if path in rec.get("outputs", {}):
                return rec["outputs"][path]
    return None


def code_files(module: str, loaded: Iterable[str] = ()) -> dict[str, str]:
    """sha256 of each source file of the stage module's import closure and of the modules it loaded by name
    (its method or adapter: ``gkd.registry.LOADED``) — what ``gkd.dag`` lists as its code."""
    root = PACKAGE.parent.parent
    files = dict.fromkeys(f for m in (module, *loaded) for f in code_deps(m))
    return {f: file_sha256(root / f) for f in sorted(files) if (root / f).is_file()}


def build_record(module: str, argv: list[str], inputs: dict[str, list[str]], outputs: dict[str, list[str]],
                 params_files: Iterable[str], config: dict | None, loaded: Iterable[str] = ()) -> dict:
    """The record of one successful stage run (paths as the command gave them, relative to the workspace)."""
    def many(flags: dict[str, list[str]], reuse: bool) -> dict:
        out = {}
        for paths in flags.values():
            for p in paths:
                out[p] = digest(p, _producer_digest(p) if reuse else None)
        return out
    return {"schema": SCHEMA, "module": module, "argv": argv,
            "inputs": many(inputs, reuse=True), "outputs": many(outputs, reuse=False),
            "flags": {"inputs": inputs, "outputs": outputs},
            "code": code_files(module, loaded) if module.startswith("gkd.") else {},
            "params_files": {p: file_sha256(Path(p)) for p in params_files if Path(p).is_file()},
            "config": config, "git": git_state(), "env": environment()}


def write_record(rec: dict) -> Path | None:
    """``logs/provenance/<first output>.json``, atomically; None for a stage that declared no output."""
    primary = next((p for paths in rec["flags"]["outputs"].values() for p in paths), None)
    if primary is None:
        return None
    path = record_path(primary)
    io.write_json(path, rec)
    return path


# ---------------------------------------------------------------------------------------------- comparison
def load_records(source: str | os.PathLike) -> dict[str, dict]:
    """Primary output → record, from a workspace (its logs/provenance/) or a bundle file (``--save``)."""
    source = Path(source)
    if source.is_file():
        bundle = json.loads(source.read_text())
        return bundle["records"]
    root = source / RECORDS
    out = {}
    for f in sorted(root.rglob("*.json")) if root.is_dir() else []:
        try:
            rec = json.loads(f.read_text())
        except ValueError:
            continue
        primary = next((p for paths in rec.get("flags", {}).get("outputs", {}).values() for p in paths), None)
        if primary:
            out[primary] = rec
    return out


def save_bundle(source: str | os.PathLike, out: str | os.PathLike) -> int:
    """Every record of a workspace in one file, without per-file stat data: what another machine compares with."""
    records = load_records(source)
    slim = {}
    for key, rec in records.items():
        rec = json.loads(json.dumps(rec))
        for side in ("inputs", "outputs"):
            for d in rec.get(side, {}).values():
                d.pop("stat", None)
        slim[key] = rec
    io.write_json(out, {"schema": SCHEMA, "records": slim})
    return len(slim)


def _order(records: dict[str, dict]) -> list[str]:
    """Primary outputs in dependency order (a stage after every stage whose output it reads)."""
    producer = {p: key for key, rec in records.items() for p in rec.get("outputs", {})}
    deps = {key: {producer[p] for p in rec.get("inputs", {}) if p in producer and producer[p] != key}
            for key, rec in records.items()}
    done: list[str] = []
    seen: set[str] = set()

    def visit(key: str, stack: tuple = ()) -> None:
        if key in seen or key in stack:
            return
        for d in sorted(deps[key]):
            visit(d, stack + (key,))
        seen.add(key)
        done.append(key)
    for key in sorted(records):
        visit(key)
    return done


def _sha(d: dict | None) -> str | None:
    if not d or d.get("missing"):
        return None
    return d.get("sha256")


def _first_file_difference(a: dict, b: dict) -> str | None:
    fa, fb = a.get("files", {}), b.get("files", {})
    for name in sorted(set(fa) | set(fb)):
        if fa.get(name) != fb.get(name):
            return name
    return None


def _config_difference(a: dict | None, b: dict | None, prefix: str = "") -> list[str]:
    if a == b:
        return []
    if not isinstance(a, dict) or not isinstance(b, dict):
        return [prefix.rstrip(".") or "(config)"]
    out = []
    for k in sorted(set(a) | set(b), key=str):
        if k == "threads":
            continue  # an environment difference, reported with the environment
        out += _config_difference(a.get(k), b.get(k), f"{prefix}{k}.")
    return out


def _env_difference(a: dict, b: dict) -> list[str]:
    out = []
    ea, eb = a.get("env", {}), b.get("env", {})
    for key in ("cpu_capability", "threads", "gpu", "cpu", "python"):
        if ea.get(key) != eb.get(key):
            out.append(f"{key}: {ea.get(key)} vs {eb.get(key)}")
    for name in sorted(set(ea.get("packages", {})) | set(eb.get("packages", {}))):
        va, vb = ea.get("packages", {}).get(name), eb.get("packages", {}).get(name)
        if va != vb:
            out.append(f"{name}: {va} vs {vb}")
    return out


@dataclass
class StageComparison:
    output: str
    module: str
    outputs_equal: bool
    input_differences: list[str] = field(default_factory=list)   # inputs, code files, params keys
    output_differences: list[str] = field(default_factory=list)  # which outputs (and their first file)
    env_differences: list[str] = field(default_factory=list)
    missing: str | None = None                                   # "a" / "b": the stage has no record there

    @property
    def verdict(self) -> str:
        if self.missing:
            return f"not run in {self.missing}"
        if self.outputs_equal:
            return "same outputs"
        return "inputs differ" if self.input_differences else "DIVERGES (inputs equal)"


def compare(a: str | os.PathLike, b: str | os.PathLike) -> list[StageComparison]:
    """Every stage recorded in ``a`` (dependency order), compared with the same stage in ``b``."""
    ra, rb = load_records(a), load_records(b)
    out = []
    for key in _order(ra):
        x = ra[key]
        y = rb.get(key)
        if y is None:
            out.append(StageComparison(key, x.get("module", "?"), False, missing="b"))
            continue
        diffs = []
        for p in sorted(set(x.get("inputs", {})) | set(y.get("inputs", {}))):
            if _sha(x["inputs"].get(p)) != _sha(y["inputs"].get(p)):
                diffs.append(f"input {p}")
        code = sorted(f for f in set(x.get("code", {})) | set(y.get("code", {}))
                      if x.get("code", {}).get(f) != y.get("code", {}).get(f))
        diffs += [f"code {f}" for f in code]
        diffs += [f"params {k}" for k in _config_difference(x.get("config"), y.get("config"))]
        if x.get("argv") != y.get("argv"):
            diffs.append("command line")
        out_diffs = []
        for p in sorted(set(x.get("outputs", {})) | set(y.get("outputs", {}))):
            da, db = x["outputs"].get(p), y["outputs"].get(p)
            if _sha(da) != _sha(db):
                first = _first_file_difference(da or {}, db or {})
                out_diffs.append(f"{p}" + (f" (first differing file: {first})" if first and Path(p).suffix == "" else ""))
        out.append(StageComparison(key, x.get("module", "?"), not out_diffs, diffs, out_diffs,
                                   _env_difference(x, y)))
    return out


def first_divergence(rows: list[StageComparison]) -> StageComparison | None:
    return next((r for r in rows if not r.missing and not r.outputs_equal and not r.input_differences), None)


def format_comparison(rows: list[StageComparison], a: str, b: str) -> str:
    lines = [f"a: {a}", f"b: {b}", ""]
    width = max((len(r.output) for r in rows), default=10)
    for r in rows:
        lines.append(f"{r.output:<{width}}  {r.verdict}")
        if not r.outputs_equal and not r.missing:
            for d in r.output_differences:
                lines.append(f"{'':<{width}}    differs: {d}")
            shown = r.input_differences[:4]
            for d in shown:
                lines.append(f"{'':<{width}}    because: {d}")
            if len(r.input_differences) > len(shown):
                lines.append(f"{'':<{width}}    ... and {len(r.input_differences) - len(shown)} more input differences")
    first = first_divergence(rows)
    lines.append("")
    if first is None:
        same = all(r.outputs_equal for r in rows if not r.missing)
        lines.append("every recorded stage gave the same outputs" if same else
                     "no stage diverges with equal inputs: every difference follows from a differing input, code or params")
    else:
        env = "; ".join(first.env_differences) or "none recorded (same versions, CPU capability and threads)"
        lines.append(f"first divergence: {first.output} ({first.module}): equal inputs, code and params, different "
                     f"outputs. Environment differences there: {env}")
    return "\n".join(lines)
