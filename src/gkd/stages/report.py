"""Stage `report`: metrics JSONs → the paper-style table (CSV) and a seaborn figure of it.

Rows: one per metrics file, in the order given (Teacher, then the methods in params order); columns: Params (M), every target domain, Avg (mean over targets), and the source
validation mIoU for reference.
"""
from __future__ import annotations

import json
import logging
from pathlib import Path

import pandas as pd

from gkd import io
from gkd.config import ConfigError
from gkd.stages import common

log = logging.getLogger("gkd.report")


def row_label(cfg, name: str) -> str:
    """Teacher → "Teacher"; a method → its display name ("+GKD"); an ablation variant → its key too."""
    if name == "teacher":
        return "Teacher"
    from gkd.distill import build_method
    return build_method(cfg, name).label(name)


def table(rows: list[tuple[str, dict]]) -> pd.DataFrame:
    records = []
    for label, m in rows:
        domains, source = m["domains"], m["source_domain"]
        rec = {"Method": label, "Params (M)": m["params_m"]}
        rec.update({d: domains[d] for d in m["targets"]})
        rec["Avg"] = m["avg"]
        if source in domains:
            rec[f"{source} (source val)"] = domains[source]
        records.append(rec)
    df = pd.DataFrame.from_records(records)
    num = [c for c in df.columns if c not in ("Method",)]
    df[num] = df[num].astype(float).round(2)
    return df


def expected_rows(cfg, setting: str) -> list[str]:
    if setting == "f2l":
        return ["teacher", *cfg.methods]
    if setting == "f2f":
        return ["teacher", *cfg.f2f.methods]
    return ["teacher", "gkd", *cfg.ablation.methods]


def run(cfg, metrics: list[Path], out_csv: Path, out_png: Path | None, radar_png: Path | None,
        title: str, setting: str = "f2l") -> pd.DataFrame:
    from gkd import plots
    loaded = [json.loads(Path(p).read_text()) for p in metrics]
    expected = expected_rows(cfg, setting)
    if [m["name"] for m in loaded] != expected:
        raise ConfigError(f"report rows {[m['name'] for m in loaded]} do not match params.yaml's {expected}: "
                          f"dvc.yaml is stale after a change of the method lists; run `gkd dag`")
    df = table([(row_label(cfg, m["name"]), m) for m in loaded])
    io.write_text(out_csv, df.to_csv(index=False))
    log.info("\n%s", df.to_string(index=False))
    if out_png is not None:
        plots.table_figure(df, out_png, title)
    if radar_png is not None:
        plots.radar(df, list(loaded[0]["targets"]) + ["Avg"], radar_png, f"{title}\nmIoU (%) per unseen domain")
    return df


def main(argv=None) -> None:
    p = common.parser(__doc__.splitlines()[0], selectors=("benchmark", "teacher", "student"))
    p.add_argument("--metrics", nargs="+", required=True, type=Path, help="metrics JSONs, one per row, in order")
    p.add_argument("--out", required=True, type=Path, help="CSV table")
    p.add_argument("--plot", type=Path, default=None, help="PNG figure of the table")
    p.add_argument("--radar", type=Path, default=None, help="PNG radar chart over the target domains")
    p.add_argument("--setting", default="f2l", choices=["f2l", "f2f", "ablation"])
    args = p.parse_args(argv)
    cfg = common.setup(args, ("benchmark", "teacher", "student"))
    what = {"f2l": "F2L", "f2f": "F2F", "ablation": "GKD ablations"}[args.setting]
    title = f"{what} on `{cfg.benchmark_name}`: {cfg.teacher_name} → {cfg.student_name}"
    run(cfg, args.metrics, args.out, args.plot, args.radar, title, args.setting)


if __name__ == "__main__":
    common.run_main(main)
