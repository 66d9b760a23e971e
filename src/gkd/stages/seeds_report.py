"""Stage `seeds-report`: the multi-seed table — mean ± std over seeds per column, and each method's
difference to GKD with a 95 % paired bootstrap interval over seeds and target images (``gkd.stats``).

Columns of the CSV: Method, n (seeds), for every target domain, Avg and the source val its mean and std,
then ``ΔAvg vs GKD`` (mean over seeds of the paired difference), its interval ``CI low`` / ``CI high``
and ``beyond noise`` (the interval excludes 0). The Teacher row is the one shared teacher (n = 1).
"""
from __future__ import annotations

import json
import logging
from pathlib import Path

import numpy as np
import pandas as pd

from gkd import io, stats
from gkd.errors import ConfigError
from gkd import plots
from gkd.stages import common
from gkd.tables import row_label, title

log = logging.getLogger(__name__)
REFERENCE = "gkd"


def load_counts(path: Path) -> dict[str, np.ndarray]:
    with np.load(path) as z:
        return {k: z[k] for k in z.files}


def run(cfg, setting: str, metrics: list[Path], per_image: list[Path], out_csv: Path, out_png: Path | None) -> pd.DataFrame:
    methods = list(cfg.methods if setting == "f2l" else cfg.f2f.methods)
    rows = ["teacher"] + methods
    expected = 1 + len(cfg.seeds) * len(methods)
    if len(metrics) != expected or len(per_image) != expected:
        raise ConfigError(f"seeds-report: expected {expected} metrics and per-image files (the teacher, then "
                          f"{len(cfg.seeds)} seeds x {len(methods)} methods), got {len(metrics)} and {len(per_image)}")
    if REFERENCE not in methods:
        raise ConfigError(f"seeds-report compares every method with {REFERENCE!r}: add it to the {setting} methods")
    runs: dict[str, list[dict]] = {"teacher": [json.loads(Path(metrics[0]).read_text())]}
    counts: dict[str, list] = {"teacher": [load_counts(per_image[0])]}
    for k, (m_path, c_path) in enumerate(zip(metrics[1:], per_image[1:])):
        method = methods[k % len(methods)]
        result = json.loads(Path(m_path).read_text())
        if result["name"] != method:
            raise ConfigError(f"seeds-report: {m_path} holds {result['name']!r}, expected {method!r} (stale dvc.yaml? "
                              f"run `gkd dag`)")
        runs.setdefault(method, []).append(result)
        counts.setdefault(method, []).append(load_counts(c_path))
    targets, source = runs["teacher"][0]["targets"], runs["teacher"][0]["source_domain"]
    intervals = stats.paired_bootstrap(counts, REFERENCE, targets, seed=cfg.seed)
    ref_avg = np.array([r["avg"] for r in runs[REFERENCE]])
    records = []
    for name in rows:
        results = runs[name]
        rec = {"Method": row_label(cfg, name), "n": len(results)}
        for col, values in [(d, [r["domains"][d] for r in results]) for d in targets] + \
                           [("Avg", [r["avg"] for r in results])] + \
                           [(f"{source} (source val)", [r["domains"].get(source, np.nan) for r in results])]:
            rec[f"{col} mean"] = round(float(np.mean(values)), 2)
            rec[f"{col} std"] = round(float(np.std(values, ddof=1)) if len(values) > 1 else 0.0, 2)
        if name != REFERENCE:
            avg = np.array([r["avg"] for r in results])
            diff = np.mean(np.resize(avg, len(ref_avg)) - ref_avg)
            low, high = intervals[name]
            rec.update({"ΔAvg vs GKD": round(float(diff), 2), "CI low": low, "CI high": high,
                        "beyond noise": bool(low > 0 or high < 0)})
        records.append(rec)
    df = pd.DataFrame.from_records(records)
    io.write_text(out_csv, df.to_csv(index=False))
    log.info("\n%s", df.to_string(index=False))
    if out_png is not None:
        per_seed = {row_label(cfg, n): [r["avg"] for r in runs[n]] for n in rows}
        plots.seeds(per_seed, out_png, f"{title(cfg, setting)}\nAvg mIoU over unseen domains: "
                                       f"mean ± std over {len(cfg.seeds)} seeds (dots: single runs)")
    return df


def main(argv=None) -> None:
    p = common.parser(__doc__.splitlines()[0], selectors=("benchmark", "teacher", "student"))
    p.add_argument("--setting", default="f2l", choices=["f2l", "f2f"])
    p.input("--metrics", nargs="+", required=True, type=Path, help="teacher, then seed-major method metrics")
    p.input("--per-image", nargs="+", required=True, type=Path, help="per-image counts, same order")
    p.output("--out", required=True, type=Path)
    p.output("--plot", type=Path, default=None)
    args = p.parse_args(argv)
    cfg = common.setup(args, ("benchmark", "teacher", "student"))
    run(cfg, args.setting, args.metrics, args.per_image, args.out, args.plot)


if __name__ == "__main__":
    common.run_main(main)
