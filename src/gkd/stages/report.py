"""Stage `report`: metrics JSONs → the paper-style table (CSV) and figures; stage-1 fidelity → its table.

Table rows: one per metrics file, in the order given (Teacher, then the methods in params order);
columns: Params (M), every target domain, Avg (mean over targets), and the source validation mIoU for
reference. The fidelity table (``--stage1``: the stage-1 folders of the label-free methods) has one row
per method, phase, held-out domain and loss term: the term's value, the constant-mean baseline and R²
(``gkd.fidelity``) — read it before the table: it says whether stage 1 distilled at all. Where the benchmark
holds out ``generic`` images, the agreement table (``--agreement-models``: every student row's segmenter) scores
each against the teacher's segmenter there (``gkd.agreement``): the label-free check that ranked stage-1 runs by
their target Avg (docs/results.md), with its source-val control beside it.
"""
from __future__ import annotations

import json
import logging
import os
from pathlib import Path

import numpy as np
import pandas as pd

from gkd import io, stats
from gkd.config import ConfigError
from gkd import plots
from gkd.stages import common
from gkd.tables import expected_rows, fidelity_table, row_label, table, title

log = logging.getLogger(__name__)
# the row lists (which rows, in which order), the seed of the images' bootstrap, the rows' labels
READS = common.Reads("seed", "methods", "f2f.methods", "ablation", methods="labels")


def run(cfg, metrics: list[Path], out_csv: Path, out_png: Path | None, radar_png: Path | None,
        title: str, setting: str = "f2l", stage1: list[Path] = (), fidelity_csv: Path | None = None,
        fidelity_png: Path | None = None, per_image: list[Path] = (), spread: Path | None = None,
        allow_dirty: bool = False, agreement_models: list[Path] = (), teacher_task: Path | None = None,
        data: Path | None = None, agreement_csv: Path | None = None) -> pd.DataFrame:
    loaded = [json.loads(Path(p).read_text()) for p in metrics]
    expected = expected_rows(cfg, setting)
    if [m["name"] for m in loaded] != expected:
        raise ConfigError(f"report rows {[m['name'] for m in loaded]} do not match params.yaml's {expected}: "
                          f"dvc.yaml is stale after a change of the method lists; run `gkd dag`")
    if agreement_models and (len(agreement_models) != len(loaded) - 1 or teacher_task is None or data is None
                             or agreement_csv is None):
        raise ConfigError(f"report: the teacher agreement needs --teacher-task, --data, --agreement-out and one "
                          f"--agreement-models folder per student row ({len(loaded) - 1}); got {len(agreement_models)}")
    footer = provenance_footer(loaded, metrics, allow_dirty)
    log.info("%s", footer)
    df = table([(row_label(cfg, m["name"]), m) for m in loaded])
    if per_image:
        df = with_spread(df, loaded, per_image, spread, cfg.seed)
    io.write_text(out_csv, df.to_csv(index=False))
    log.info("\n%s", df.to_string(index=False))
    if out_png is not None:
        plots.table_figure(df, out_png, f"{title}\n{footer}")
    if radar_png is not None:
        plots.radar(df, list(loaded[0]["targets"]) + ["Avg"], radar_png, f"{title}\nmIoU (%) per unseen domain")
    if stage1 and fidelity_csv is not None:
        fid = fidelity_table(cfg, stage1)
        io.write_text(fidelity_csv, fid.to_csv(index=False))
        last = fid[fid["phase"] == fid.groupby("Method")["phase"].transform("max")]  # the heads stage 2 follows
        log.info("stage-1 fidelity (R², last phase):\n%s",
                 last.pivot_table(index=["Method", "term"], columns="domain", values="r2").round(3).to_string())
        if fidelity_png is not None:
            plots.fidelity(last, list(loaded[0]["targets"]), fidelity_png,
                           f"{title}\nstage-1 fidelity to the teacher on held-out images (R², 1 = the teacher)")
    if agreement_models:
        scored = teacher_agreement([row_label(cfg, m["name"]) for m in loaded[1:]], agreement_models, teacher_task, data)
        io.write_text(agreement_csv, scored.to_csv(index=False))
        log.info("agreement with the teacher's segmenter on held-out images (mIoU %%, label-free):\n%s",
                 scored.to_string(index=False))
    return df


def teacher_agreement(labels: list[str], models: list[Path], teacher_task: Path, data: Path) -> pd.DataFrame:
    """One row per student row: its segmenter's agreement with the teacher's on held-out generic, and the
    control."""
    from gkd import agreement  # torch: only where the agreement is measured
    against = agreement.checks(teacher_task, data)
    if not against:  # no held-out generic images: the rows with empty cells
        return pd.DataFrame({"Method": labels, agreement.COLUMN: np.nan})
    return pd.DataFrame([{"Method": label, **{column: check.of(Path(model)) for column, check in against.items()}}
                         for label, model in zip(labels, models)])


def provenance_footer(loaded: list[dict], paths: list[Path], allow_dirty: bool) -> str:
    """Which code made the rows (each metrics file's ``provenance``). Rows made by modified, uncommitted code
    cannot be traced to a commit: refused unless ``allow_dirty`` (``--allow-dirty`` or GKD_ALLOW_DIRTY=1), and
    then the footer says so. Rows of several commits are named with their counts (a row that an edit elsewhere
    did not touch is legitimately reused from an earlier commit)."""
    dirty = [str(p) for m, p in zip(loaded, paths) if (m.get("provenance") or {}).get("dirty")]
    if dirty and not allow_dirty:
        raise ConfigError(f"report: {len(dirty)} rows were made by modified, uncommitted code ({', '.join(dirty[:3])}"
                          f"{' ...' if len(dirty) > 3 else ''}): commit and rerun them, or allow it with "
                          f"GKD_ALLOW_DIRTY=1 (the table then says so)")
    commits: dict[str, int] = {}
    for m in loaded:
        c = (m.get("provenance") or {}).get("commit")
        commits[c[:10] if c else "unknown"] = commits.get(c[:10] if c else "unknown", 0) + 1
    text = "rows made at commit " + ", ".join(f"{c} ({n} rows)" if len(commits) > 1 else c for c, n in commits.items())
    return text + (f"; {len(dirty)} rows by uncommitted code (allowed)" if dirty else "")


IMAGES_COLUMN = "Avg ± images (95 %)"
SEEDS_COLUMN = "Avg sd over seeds"
INITS_COLUMN = "Avg sd over student inits"


def with_spread(df: pd.DataFrame, loaded: list[dict], per_image: list[Path], spread: Path | None, seed: int
                ) -> pd.DataFrame:
    """Each row's measured spread beside its Avg: the half-width of the 95 % interval over the test images of
    this run (a bootstrap within each target domain) and, where ``spread`` (a committed measurement of the
    multi-seed runs, ``results/reference_spread.csv``) has the row, the standard deviation of its Avg over seeds
    and thread counts and how many runs that rests on; where it also has ``init_sd`` (benchmarks/init_draw.py),
    the row's sd over draws of the student's initialisation, which the seeds never vary, and how many draws."""
    if len(per_image) != len(loaded):
        raise ConfigError(f"report: {len(loaded)} metrics files but {len(per_image)} per-image files")
    widths = []
    for m, path in zip(loaded, per_image):
        with np.load(path) as z:
            counts = {k: z[k] for k in z.files}
        widths.append(round(stats.half_width(stats.image_bootstrap(counts, m["targets"], seed=seed)), 2))
    out = df.copy()
    at = list(out.columns).index("Avg") + 1
    out.insert(at, IMAGES_COLUMN, widths)
    if spread is not None and Path(spread).is_file():
        ref = pd.read_csv(spread).set_index("Method")
        out.insert(at + 1, SEEDS_COLUMN, [ref["sd"].get(m, np.nan) for m in out["Method"]])
        out.insert(at + 2, "runs", [ref["runs"].get(m, np.nan) for m in out["Method"]])
        if "init_sd" in ref.columns:
            out.insert(at + 3, INITS_COLUMN, [ref["init_sd"].get(m, np.nan) for m in out["Method"]])
            out.insert(at + 4, "draws", [ref["init_draws"].get(m, np.nan) for m in out["Method"]])
    return out


def main(argv=None) -> None:
    p = common.parser(__doc__.splitlines()[0], selectors=("benchmark", "teacher", "student"))
    p.input("--metrics", nargs="+", required=True, type=Path, help="metrics JSONs, one per row, in order")
    p.output("--out", required=True, type=Path, help="CSV table")
    p.output("--plot", type=Path, default=None, help="PNG figure of the table")
    p.output("--radar", type=Path, default=None, help="PNG radar chart over the target domains")
    p.add_argument("--setting", default="f2l", choices=["f2l", "f2f", "ablation"])
    p.input("--stage1", nargs="*", type=Path, default=[], help="stage-1 folders (fidelity.json) of the methods")
    p.output("--fidelity-out", type=Path, default=None, help="CSV of the stage-1 fidelity")
    p.output("--fidelity-plot", type=Path, default=None, help="PNG of the stage-1 fidelity")
    p.input("--per-image", nargs="*", type=Path, default=[],
            help="per-image counts of every row, same order as --metrics (the images' bootstrap spread)")
    p.input("--spread", type=Path, default=None,
            help="measured seed spread per row (results/reference_spread.csv, from the multi-seed runs)")
    p.add_argument("--allow-dirty", action="store_true", default=os.environ.get("GKD_ALLOW_DIRTY") == "1",
                   help="accept rows made by uncommitted code (default: the GKD_ALLOW_DIRTY=1 environment variable)")
    p.input("--agreement-models", nargs="*", type=Path, default=[],
            help="every student row's stage-2 folder, same order as --metrics after the Teacher")
    p.input("--teacher-task", type=Path, default=None, help="the Teacher row's segmenter (teacher_task)")
    p.input("--data", type=Path, default=None, help="the prepared benchmark (its held-out generic split)")
    p.output("--agreement-out", type=Path, default=None, help="CSV of each row's agreement with the teacher")
    args = p.parse_args(argv)
    cfg = common.setup(args, READS, ("benchmark", "teacher", "student"))
    run(cfg, args.metrics, args.out, args.plot, args.radar, title(cfg, args.setting), args.setting, args.stage1,
        args.fidelity_out, args.fidelity_plot, args.per_image, args.spread, args.allow_dirty, args.agreement_models,
        args.teacher_task, args.data, args.agreement_out)


if __name__ == "__main__":
    common.run_main(main)
