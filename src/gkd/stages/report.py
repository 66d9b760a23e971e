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
from gkd.stages import common

log = logging.getLogger("gkd.report")


def row_label(cfg, name: str) -> str:
    """Teacher → "Teacher"; a method → its display name ("+GKD"); an ablation variant → its key too."""
    if name == "teacher":
        return "Teacher"
    from gkd.distill import METHODS
    algo = cfg.method(name).algo
    display = METHODS[algo].display
    return display if name == algo else f"{display} [{name}]"


def table(rows: list[tuple[str, dict]]) -> pd.DataFrame:
    records = []
    for label, m in rows:
        domains, source = m["domains"], m["source_domain"]
        rec = {"Method": label, "Params (M)": m["params_m"]}
        rec.update({d: domains[d] for d in m["targets"]})
        rec["Avg"] = m["avg"]
        rec[f"{source} (source val)"] = domains[source]
        records.append(rec)
    df = pd.DataFrame.from_records(records)
    num = [c for c in df.columns if c not in ("Method",)]
    df[num] = df[num].astype(float).round(2)
    return df


def plot(df: pd.DataFrame, path: Path, title: str) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import seaborn as sns

    cols = [c for c in df.columns if c not in ("Method", "Params (M)")]
    long = df.melt(id_vars="Method", value_vars=cols, var_name="domain", value_name="mIoU")
    sns.set_theme(style="whitegrid", font_scale=0.9)
    fig, (ax_heat, ax_bar) = plt.subplots(1, 2, figsize=(13, 0.55 * len(df) + 2.6), dpi=110,
                                         gridspec_kw={"width_ratios": [1.1, 1.4]})
    sns.heatmap(df.set_index("Method")[cols], annot=True, fmt=".1f", cmap="viridis", vmin=0, vmax=100,
                cbar_kws={"label": "mIoU (%)"}, ax=ax_heat)
    ax_heat.set_xlabel("")
    ax_heat.set_ylabel("")
    ax_heat.set_title("mIoU per domain (%)")
    sns.barplot(data=long, x="domain", y="mIoU", hue="Method", ax=ax_bar)
    ax_bar.set_ylim(0, 100)
    ax_bar.set_xlabel("")
    ax_bar.set_ylabel("mIoU (%)")
    ax_bar.tick_params(axis="x", rotation=30)
    ax_bar.legend(fontsize=8, ncol=2, loc="upper right")
    ax_bar.set_title("grouped by domain (targets unseen in training)")
    fig.suptitle(title)
    fig.tight_layout()
    io.save_figure(path, fig)
    plt.close(fig)


def run(cfg, metrics: list[Path], out_csv: Path, out_png: Path | None, title: str) -> pd.DataFrame:
    loaded = [json.loads(Path(p).read_text()) for p in metrics]
    df = table([(row_label(cfg, m["name"]), m) for m in loaded])
    io.write_text(out_csv, df.to_csv(index=False))
    log.info("\n%s", df.to_string(index=False))
    if out_png is not None:
        plot(df, out_png, title)
    return df


def main(argv=None) -> None:
    p = common.parser(__doc__.splitlines()[0], selectors=("benchmark", "teacher", "student"))
    p.add_argument("--metrics", nargs="+", required=True, type=Path, help="metrics JSONs, one per row, in order")
    p.add_argument("--out", required=True, type=Path, help="CSV table")
    p.add_argument("--plot", type=Path, default=None, help="PNG figure of the table")
    args = p.parse_args(argv)
    cfg = common.setup(args, ("benchmark", "teacher", "student"))
    title = f"{cfg.benchmark_name}: {cfg.teacher_name} → {cfg.student_name}"
    run(cfg, args.metrics, args.out, args.plot, title)


if __name__ == "__main__":
    common.run_main(main)
