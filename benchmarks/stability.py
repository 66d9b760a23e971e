"""A row's spread over seeds and over rounding: the multi-seed runs of two workspaces that differ only in `threads`.

Run the seeds target twice, in two workspaces whose params differ only in `threads` (1 and 2: other reduction
splits, so other rounding of the same arithmetic), then

    python benchmarks/stability.py --runs threads2=../ws-t2 threads1=../ws-t1 --out results/stability.json

For every method present in both, per workspace: the Avg of each seed, their mean and standard deviation; the
per-seed difference between the workspaces (the numeric spread) and its mean; and the pooled mean and sd of all
runs — what an interval that covers seeds *and* numerics rests on. Also the figure ``plots/stability.png``
(each run a dot, per method and workspace). Reads the metrics JSONs the seeds pipeline writes
(``metrics/<benchmark>/<teacher>/<student>/[seed<k>/]<method>.json``).
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
sys.path.insert(0, str(Path(__file__).resolve().parent))
from gkd import io  # noqa: E402
from gkd.config import load  # noqa: E402
from provenance import source_commit  # noqa: E402  (benchmarks/, the script's folder)


def seed_runs(workspace: Path) -> tuple[dict[str, dict[int, float]], dict]:
    """method → {seed: Avg} of the workspace's F2L seed runs, and the params that made them."""
    cfg = load(workspace / "params.yaml")
    ns = workspace / "metrics" / cfg.benchmark_name / cfg.teacher_name / cfg.student_name
    out: dict[str, dict[int, float]] = {}
    for method in cfg.methods:
        for seed in cfg.seeds:
            path = ns / (f"{method}.json" if seed == cfg.seed else f"seed{seed}/{method}.json")
            if path.is_file():
                out.setdefault(method, {})[seed] = json.loads(path.read_text())["avg"]
    return out, {"threads": cfg.threads, "seeds": list(cfg.seeds)}


def summarise(runs: dict[str, dict[str, dict[int, float]]]) -> dict:
    names = list(runs)
    methods = [m for m in runs[names[0]] if all(m in runs[n] for n in names)]
    result = {}
    for m in methods:
        per = {n: runs[n][m] for n in names}
        rec = {n: {"avg": {str(s): round(v, 2) for s, v in per[n].items()},
                   "mean": round(float(np.mean(list(per[n].values()))), 2),
                   "sd": round(float(np.std(list(per[n].values()), ddof=1)), 2) if len(per[n]) > 1 else None}
               for n in names}
        if len(names) == 2:
            a, b = names
            common = sorted(set(per[a]) & set(per[b]))
            diffs = [per[b][s] - per[a][s] for s in common]
            rec["numeric"] = {"per_seed": {str(s): round(d, 2) for s, d in zip(common, diffs)},
                              "mean_difference": round(float(np.mean(diffs)), 2) if diffs else None,
                              "difference_of_means": round(rec[b]["mean"] - rec[a]["mean"], 2)}
        pooled = [v for n in names for v in per[n].values()]
        rec["pooled"] = {"runs": len(pooled), "mean": round(float(np.mean(pooled)), 2),
                         "sd": round(float(np.std(pooled, ddof=1)), 2) if len(pooled) > 1 else None}
        result[m] = rec
    return result


def figure(summary: dict, names: list[str], path: Path) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    methods = list(summary)
    fig, ax = plt.subplots(figsize=(1.3 * len(methods) + 3, 4.4), dpi=110)
    colours = plt.get_cmap("tab10")
    for i, m in enumerate(methods):
        for j, n in enumerate(names):
            values = list(summary[m][n]["avg"].values())
            x = i + (j - (len(names) - 1) / 2) * 0.25
            ax.scatter(np.full(len(values), x), values, color=colours(j), s=16, label=n if i == 0 else None)
            ax.errorbar(x, np.mean(values), yerr=np.std(values, ddof=1) if len(values) > 1 else 0, color=colours(j),
                        capsize=4, fmt="_", markersize=14)
    ax.set_xticks(range(len(methods)))
    ax.set_xticklabels(methods, rotation=30, ha="right")
    ax.set_ylabel("Avg mIoU over unseen domains (%)")
    ax.set_title("each seed a dot, mean ± sd per workspace (they differ only in `threads`)", fontsize=9)
    ax.legend(fontsize=8)
    fig.tight_layout()
    io.save_figure(path, fig)
    plt.close(fig)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", nargs="+", required=True, metavar="NAME=WORKSPACE")
    ap.add_argument("--out", type=Path, default=Path("results/stability.json"))
    ap.add_argument("--plot", type=Path, default=Path("plots/stability.png"))
    args = ap.parse_args()
    runs, settings = {}, {}
    for item in args.runs:
        name, _, ws = item.partition("=")
        runs[name], settings[name] = seed_runs(Path(ws))
    summary = summarise(runs)
    io.write_json(args.out, {"commit": source_commit(), "workspaces": settings, "methods": summary})
    figure(summary, list(runs), args.plot)
    for m, rec in summary.items():
        print(f"{m:16s} " + "  ".join(f"{n}: {rec[n]['mean']:.2f} ± {rec[n]['sd'] or 0:.2f} (n={len(rec[n]['avg'])})"
                                      for n in runs)
              + (f"  Δ {rec['numeric']['difference_of_means']:+.2f}" if "numeric" in rec else "")
              + f"  pooled {rec['pooled']['mean']:.2f} ± {rec['pooled']['sd'] or 0:.2f} (n={rec['pooled']['runs']})")
    print(f"wrote {args.out} and {args.plot}")


if __name__ == "__main__":
    main()
