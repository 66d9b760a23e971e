"""Stage `manifest`: the raw files a real benchmark's `prepare` reads → ``data/manifests/<benchmark>.json``.

Raw datasets live outside the workspace, where neither front-end looks: without this stage, an edited
label left Snakemake with "Nothing to be done", DVC "up to date", and DVC's run cache restored the data
prepared before the change. This stage lists every file `prepare` would read — the same selection
(``gkd.data.real``: each dataset's folder, split, reader listing and cap; the ``generic_folder``'s
images) — with its size and mtime in nanoseconds, and `prepare` depends on the list.

It runs at every invocation for a real benchmark (DVC: ``always_changed``; Snakemake: ``refresh`` as
the workflow is parsed, ``workflow/rules/pipeline.smk``) and writes the file only when its content
changed, so a no-op reruns nothing and costs one directory walk and a ``stat`` per file — never a
read of the data. With ``manifest: {hash: true}`` in params, each file's SHA-256 replaces its mtime:
for filesystems whose mtimes cannot be trusted, and to make the manifest (hence the prepared data's
DVC run-cache key) the same on every machine that holds the same bytes; it reads all the data on
every invocation.

Data problems (a missing folder, an image without its label) are recorded, not raised: judging data
is `prepare`'s business (one clear error, or ``skip_bad``) and ``gkd check-data`` lists them all; the
manifest only has to change when they do. The file is deterministic: datasets and paths sorted, paths
relative to each dataset's folder (moving a dataset is not a change of its content), one file a line.

Deliberately torch-free and without ``gkd.stages.common`` (which imports torch): it runs every time.
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from gkd import config as config_mod
from gkd import contract, io
from gkd.data import real
from gkd.errors import GKDError
from gkd.stages import args as cli_args

log = logging.getLogger("gkd.manifest")

READS = contract.Reads("benchmark", "datasets", "manifest")
FORMAT = 1
CHUNK = 1 << 20  # bytes per read while hashing


def raw_files(cfg: config_mod.Config) -> tuple[dict[str, dict[str, Path]], list[str]]:
    """The files `prepare` reads for ``cfg.benchmark``: {dataset: {path relative to its folder: path}},
    and the data problems met while listing (one line each, as the listing words them).

    A config that cannot select anything (unknown dataset key, mixed class sets) raises ConfigError,
    as `prepare` would; the synthetic adapter reads no file.
    """
    files, problems = {}, []
    if cfg.benchmark.adapter != "real":
        return files, problems
    for listing in (listing for part in real.select(cfg.benchmark, cfg.datasets, skip_bad=True)
                    for listing in part.listings):
        if listing.error is not None:
            # the generic folder fails as a whole, before its split into train and val
            where = real.GENERIC if listing.reader is real.IMAGE_FOLDER else listing.where
            problems.append(f"{where}: {listing.error}")
            continue
        paths = [p for _, s in listing.items for p in (s.image, s.label) if p is not None]  # generic: no label
        paths += [Path(m["file"]) for m in listing.missing]
        problems += [f"{listing.where}: {m['file']}: {m['reason']}" for m in listing.missing]
        files.setdefault(listing.reader.name, {}).update({_relative(p, listing.folder): p for p in paths})
    return files, problems


def _relative(path: Path, folder: Path) -> str:
    try:
        return Path(path).relative_to(folder).as_posix()
    except ValueError:  # a reader that looked outside the dataset's folder: keep the whole path
        return Path(path).as_posix()


def describe(path: Path, content_hash: bool) -> list:
    """[size, mtime_ns] or, with ``content_hash``, [size, "sha256:<hex>"]; [None, "<why>"] if unreadable."""
    try:
        if not content_hash:
            st = os.stat(path)
            return [st.st_size, st.st_mtime_ns]
        digest, size = hashlib.sha256(), 0
        with open(path, "rb") as fh:
            while chunk := fh.read(CHUNK):  # hashlib releases the GIL on large updates: threads overlap
                digest.update(chunk)
                size += len(chunk)
        return [size, f"sha256:{digest.hexdigest()}"]
    except OSError as err:  # vanished since the listing, or unreadable: still a state to compare
        return [None, err.strerror or type(err).__name__]


def build(cfg: config_mod.Config, workers: int = 0) -> dict:
    """The manifest of ``cfg.benchmark`` as a JSON-able dict (``workers`` threads stat or hash; 0 = auto)."""
    files, problems = raw_files(cfg)
    content_hash = cfg.manifest.hash
    jobs = [(dataset, rel, path) for dataset in sorted(files) for rel, path in sorted(files[dataset].items())]
    # many threads even on few cores: on network filesystems a stat or a read is mostly waiting
    workers = workers or min(32, 4 * len(os.sched_getaffinity(0)))
    with ThreadPoolExecutor(workers) as pool:
        described = list(pool.map(lambda job: describe(job[2], content_hash), jobs))
    listed: dict[str, list] = {dataset: [] for dataset in sorted(files)}
    for (dataset, rel, _), info in zip(jobs, described):
        listed[dataset].append([rel, *info])
    return {"format": FORMAT, "benchmark": cfg.benchmark_name, "adapter": cfg.benchmark.adapter,
            "content": "size+sha256" if content_hash else "size+mtime_ns", "problems": problems, "files": listed}


def render(manifest: dict) -> str:
    """Deterministic JSON text, one file a line (readable with ``diff`` when something changed)."""
    def dump(value) -> str:
        return json.dumps(value, ensure_ascii=False)

    def block(open_: str, close: str, items: list[str], indent: str) -> str:
        inner = ",\n".join(f"{indent}  {item}" for item in items)
        return f"{open_}\n{inner}\n{indent}{close}" if items else open_ + close

    files = [f"{dump(dataset)}: " + block("[", "]", [dump(entry) for entry in entries], "    ")
             for dataset, entries in manifest["files"].items()]
    fields = [f"{dump(k)}: {dump(v)}" for k, v in manifest.items() if k not in ("problems", "files")]
    fields += ['"problems": ' + block("[", "]", [dump(p) for p in manifest["problems"]], "  "),
               '"files": ' + block("{", "}", files, "  ")]
    return block("{", "}", fields, "") + "\n"


def refresh(cfg: config_mod.Config, out: str | os.PathLike, workers: int = 0) -> bool:
    """Write ``out`` (atomically) only if its content would change; True if it was written."""
    out = Path(out)
    text = render(build(cfg, workers))
    try:
        if out.read_text() == text:
            return False
    except (OSError, UnicodeDecodeError):
        pass  # missing or unreadable: write it
    io.write_text(out, text)
    return True


def main(argv=None) -> None:
    p = cli_args.parser(__doc__.splitlines()[0], selectors=("benchmark",))
    p.output("--out", required=True, type=Path, help="the manifest, data/manifests/<benchmark>.json")
    args = p.parse_args(argv)
    cli_args.configure_logging()
    try:
        full = config_mod.load(args.params, benchmark=args.benchmark)
        written = refresh(contract.StageConfig(full, READS, "manifest"), args.out)
    except GKDError as err:
        cli_args.fail(err)
    cli_args.CURRENT.update(args=args, config=full.raw)
    cli_args.record_provenance()
    log.info("%s: %s", args.out, "written (new, or the raw files changed)" if written else "unchanged")


if __name__ == "__main__":
    main()
