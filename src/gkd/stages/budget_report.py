"""Stage `budget-report`: every F2L method at 1×, 2×, 4× … the default stage-1 and task epochs.

The default budget should be the smallest at which doubling changes no method's Avg by more than about
a point: the CSV has each method's Avg at each budget, its change from the budget before, and — for the
label-free methods — the stage-1 fidelity (R² on held-out source and generic images, the quantities
stage-1 hyper-parameters are chosen by). The log names the smallest budget that meets the criterion.
"""
from __future__ import annotations

import json
import logging
from pathlib import Path

import pandas as pd

from gkd import io
from gkd.errors import ConfigError
from gkd import plots
from gkd.stages import common
from gkd.tables import row_label, title

log = logging.getLogger(__name__)
READS = common.Reads("budget", "methods", methods="labels")
TOLERANCE = 1.0  # mIoU points: "doubling changes no method's Avg by more than about a point"


def run(cfg, metrics: list[Path], stage1: list[Path], out_csv: Path, out_png: Path | None) -> pd.DataFrame:
    budgets = sorted(cfg.budget.multipliers)
    if len(metrics) != len(budgets) * len(cfg.methods):
        raise ConfigError(f"budget-report: expected {len(budgets)} budgets x {len(cfg.methods)} methods metrics, "
                          f"got {len(metrics)}")
    fid = {}
    for directory in stage1:
        report = json.loads((Path(directory) / "fidelity.json").read_text())
        info = json.loads((Path(directory) / "backbone.json").read_text())
        last = report["phases"][max(report["phases"])]["domains"]
        fid[(report["method"], info.get("budget", 1))] = {
            f"R² {term} ({domain})": last[domain][term]["r2"]
            for domain in (d for d in ("sim", "generic") if d in last) for term in last[domain]}
    records = []
    for k, path in enumerate(metrics):
        m = json.loads(Path(path).read_text())
        budget = budgets[k // len(cfg.methods)]
        rec = {"Method": row_label(cfg, m["name"]), "budget": budget}
        rec.update({d: m["domains"][d] for d in m["targets"]})
        rec["Avg"] = m["avg"]
        rec[f"{m['source_domain']} (source val)"] = m["source"]
        rec.update(fid.get((m["name"], budget), {}))
        records.append(rec)
    df = pd.DataFrame.from_records(records)
    scores = [c for c in df.columns if c not in ("Method", "budget") and not c.startswith("R² ")]
    df[scores] = df[scores].astype(float).round(2)
    df["ΔAvg vs previous budget"] = df.groupby("Method")["Avg"].diff().round(2)
    io.write_text(out_csv, df.to_csv(index=False))
    log.info("\n%s", df.to_string(index=False))
    change = df.groupby("budget")["ΔAvg vs previous budget"].apply(lambda s: s.abs().max())
    settled = [b for b, nxt in zip(budgets, budgets[1:]) if change[nxt] <= TOLERANCE]
    log.info("largest |ΔAvg| when the budget doubles: %s; smallest budget at which doubling changes no Avg by "
             "more than %.1f: %s", change.dropna().round(2).to_dict(), TOLERANCE, settled[0] if settled else "none measured")
    if out_png is not None:
        plots.budget_curve(df, out_png, f"{title(cfg, 'f2l')}\nbudget curve (stage-1 and task epochs x budget)")
    return df


def main(argv=None) -> None:
    p = common.parser(__doc__.splitlines()[0], selectors=("benchmark", "teacher", "student"))
    p.input("--metrics", nargs="+", required=True, type=Path, help="budget-major F2L method metrics")
    p.input("--stage1", nargs="*", type=Path, default=[], help="stage-1 folders of every budget")
    p.output("--out", required=True, type=Path)
    p.output("--plot", type=Path, default=None)
    args = p.parse_args(argv)
    cfg = common.setup(args, READS, ("benchmark", "teacher", "student"))
    run(cfg, args.metrics, args.stage1, args.out, args.plot)


if __name__ == "__main__":
    common.run_main(main)
