"""`gkd check-data`: decode every raw file a real benchmark's `prepare` would read, report every problem at once.

`prepare` stops at the first bad sample (or, with ``skip_bad``, skips it), which on GTA5 can be an hour
in. This preflight selects the same splits with the same code — the `real` adapter's listing and caps
(``gkd.data.real``) and each dataset's reader (``gkd.data.readers``) — decodes every image and label on
a thread pool (Pillow and numpy release the GIL while decoding), and collects instead of raising:

* ``layout``        — a dataset or split folder that cannot be listed (missing folder, no images, a
                      patch of the other official split, a Mapillary config of another version);
* ``missing label`` — an image whose label file does not exist;
* ``unreadable``    — a file that is missing, truncated or not an image;
* ``bad label``     — a label that decodes but holds values outside the reader's label map (or is not
                      in the label format the dataset ships);
* ``size mismatch`` — an image and its label of different sizes.

The images of a ``generic_folder`` (stage 1a, unlabelled) are listed and decoded too, as
``generic/train`` and ``generic/val``: a missing or empty folder is a layout problem, a file that does
not decode is unreadable.

It writes nothing (``--out`` asks for a JSON list of the problems). The `synthetic` benchmark is
generated, so there is nothing to check.
"""
from __future__ import annotations

import os
import sys
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from typing import Optional

from gkd import config, io
from gkd.config import Config, ConfigError
from gkd.data import real
from gkd.data.readers import open_image
from gkd.errors import GKDError

KINDS = ("layout", "missing label", "unreadable", "bad label", "size mismatch")
SAMPLE_KINDS = KINDS[1:]  # what `skip_bad` skips; a layout problem stops prepare whatever it says


@dataclass(frozen=True)
class Problem:
    kind: str     # one of KINDS
    where: str    # "<dataset>/<split>" as the dataset names it (gta5/train, cityscapes/val)
    file: str     # the file or folder at fault
    detail: str   # the reader's one-line message (names the file and what was expected)
    sample: str = ""  # the image of the pair (what `skip_bad` skips); "" for a layout problem


@dataclass(frozen=True)
class Split:
    """One split prepare reads: where it is, and the (reader, sample) pairs it takes (caps applied)."""
    where: str
    items: list


@dataclass
class Report:
    benchmark: str
    checked: dict[str, int] = field(default_factory=dict)   # where -> samples decoded
    problems: list[Problem] = field(default_factory=list)

    def counts(self) -> dict[str, int]:
        return {kind: sum(p.kind == kind for p in self.problems) for kind in KINDS}


def plan(cfg: Config) -> tuple[list[Split], list[Problem]]:
    """The splits `prepare` would read for ``cfg.benchmark`` (``real.select``: one per dataset split, so a
    two-source train split is two) and the layout / missing-label problems found while listing them."""
    splits, problems = [], []
    for listing in (listing for part in real.select(cfg.benchmark, cfg.datasets, skip_bad=True)
                    for listing in part.listings):
        if listing.error is not None:  # this split cannot be listed; the others still are
            problems.append(Problem("layout", listing.where, str(listing.folder or ""), str(listing.error)))
            continue
        problems += [Problem("missing label", listing.where, m["file"], f"{m['file']}: {m['reason']}", m["file"])
                     for m in listing.missing]
        splits.append(Split(listing.where, listing.items))
    return splits, problems


def check_sample(reader, sample, where: str) -> list[Problem]:
    """Decode one image/label pair as prepare would; every problem it has (usually none)."""
    def attempt(read, path):
        try:
            return read(path), None
        except GKDError as err:
            return None, str(err)
        except Exception as err:  # noqa: BLE001 - a preflight reports a strange file, it does not crash on it
            return None, f"{path}: unreadable ({type(err).__name__}: {err})"

    image, image_error = attempt(reader.read_image, sample.image)
    label, label_error = (None, None) if sample.label is None else attempt(reader.read_label, sample.label)
    problems = []
    if image_error:
        problems.append(Problem("unreadable", where, str(sample.image), image_error, str(sample.image)))
    if label_error:
        # the message alone does not say whether the file or its content is at fault: a file that opens
        # is a bad label (values outside the map, wrong format), one that does not is unreadable
        opens = attempt(open_image, sample.label)[1] is None
        problems.append(Problem("bad label" if opens else "unreadable", where, str(sample.label), label_error,
                                str(sample.image)))
    if image is not None and label is not None and image.shape[:2] != label.shape:
        problems.append(Problem("size mismatch", where, str(sample.label),
                                f"{sample.label}: label is {label.shape[1]}×{label.shape[0]} but its image "
                                f"{sample.image} is {image.shape[1]}×{image.shape[0]}", str(sample.image)))
    return problems


def run(cfg: Config, workers: int = 0, progress=None) -> Report:
    """Check every split of ``cfg.benchmark`` on ``workers`` threads (0 = every core the process may use)."""
    report = Report(cfg.benchmark_name)
    splits, report.problems = plan(cfg)
    workers = workers or len(os.sched_getaffinity(0))
    with ThreadPoolExecutor(workers) as pool:
        for split in splits:
            found = pool.map(lambda item, w=split.where: check_sample(*item, w), split.items)
            found = [p for problems in found for p in problems]
            report.problems += found
            report.checked[split.where] = len(split.items)
            if progress is not None:
                progress(f"{split.where}: {len(split.items)} samples decoded, {len(found)} problem(s)")
    report.problems.sort(key=lambda p: KINDS.index(p.kind))  # stable: split and file order within a kind
    return report


def format_report(report: Report, preset: str, skip_bad: bool, show: int = 20) -> str:
    """The lines to print: every problem (``show`` per kind, 0 = all), the count per kind, and the hint."""
    total = sum(report.checked.values())
    counts = report.counts()
    lines = []
    if not report.problems:
        return (f"check-data {report.benchmark}: no problems in {total} samples of {len(report.checked)} splits "
                f"({', '.join(f'{w} {n}' for w, n in report.checked.items())})")
    lines.append(f"check-data {report.benchmark}: {len(report.problems)} problem(s); {total} image/label pairs "
                 f"decoded in {len(report.checked)} splits")
    for kind in KINDS:
        mine = [p for p in report.problems if p.kind == kind]
        for p in mine[:show or None]:
            lines.append(f"  {kind:<13}  {p.where:<20}  {p.detail}")
        if show and len(mine) > show:
            lines.append(f"  {kind:<13}  ... and {len(mine) - show} more (--show 0 lists all, --out writes them)")
    lines.append("summary: " + ", ".join(f"{kind} {n}" for kind, n in counts.items()))
    bad_samples = sum(counts[k] for k in SAMPLE_KINDS)
    if bad_samples:
        state = ("it is on: prepare will skip these samples" if skip_bad else
                 f"set `skip_bad: true` in {preset} to have prepare skip these samples")
        lines.append(f"hint: {state} (it lists them in skipped.json next to the prepared data)")
    if counts["layout"]:
        lines.append("hint: layout problems stop prepare even with skip_bad: fix those folders (or the dataset "
                     "paths in params: `datasets:` / the benchmark's `root`)")
    return "\n".join(lines)


def main(params: str, benchmark: Optional[str], workers: int, show: int, out: Optional[str]) -> int:
    """`gkd check-data`: 0 when every file is fine (or there is nothing to check), 1 when problems were found."""
    if workers < 0:
        raise ConfigError(f"--workers must be >= 0 (0 = every core), got {workers}")
    if show < 0:
        raise ConfigError(f"--show must be >= 0 (0 = every problem), got {show}")
    cfg = config.load(params, benchmark=benchmark)  # the data-relevant validation, without torch's start-up
    preset = f"benchmarks.{cfg.benchmark_name}"
    if cfg.benchmark.adapter != "real":
        print(f"{preset} uses the {cfg.benchmark.adapter!r} adapter (generated on the fly, no raw files): "
              f"nothing to check")
        return 0
    report = run(cfg, workers, progress=lambda line: print(line, file=sys.stderr, flush=True))
    print(format_report(report, preset, cfg.benchmark.skip_bad, show))
    if out:
        io.write_json(out, {"benchmark": report.benchmark, "checked": report.checked, "counts": report.counts(),
                            "problems": [asdict(p) for p in report.problems]})
    return 1 if report.problems else 0
