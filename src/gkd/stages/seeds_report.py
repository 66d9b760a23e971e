"""Stage `seeds-report`: the multi-seed table — mean ± std over seeds per column, and GKD's difference to each
method with a 95 % paired bootstrap interval over seeds and target images (``gkd.stats``).

Columns of the CSV: Method, n (seeds), for every target domain, Avg and the source val its mean and std (empty
for a row of one run, the shared teacher), then ``GKD − method`` (mean over seeds of the paired difference of
Avg: positive where GKD is better), its interval ``CI low`` / ``CI high`` and ``beyond noise`` (the interval
excludes 0).

Two more outputs. ``--spread-out``: each row's Avg mean, sd and number of runs, in the format of
``results/reference_spread.csv``, the committed measurement the single-seed table shows beside each row.
``--check-out`` / ``--check-plot`` (with ``--stage1``): for every stage-1 run, the label-free checks of its
fidelity report on held-out ``generic`` — the linear CKA of the student's patch tokens with its own tokens before
stage 1 (how far stage 1 moved it) and with the teacher's, the linear probe to the teacher — next to the run's
target Avg, which is only reported here, never used to choose anything: does a label-free check tell the runs
that keep their robustness from those that lose it (Spearman's rank correlation in the figure)? With
``--stage2``, ``--teacher-task`` and ``--data`` one more: the agreement of the run's segmenter with the teacher's
on held-out ``generic`` (``gkd.agreement``; its source-val twin beside it in the CSV as the control, not plotted).
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
READS = common.Reads("seed", "seeds", "methods", "f2f.methods", methods="labels")
REFERENCE = "gkd"


def load_counts(path: Path) -> dict[str, np.ndarray]:
    with np.load(path) as z:
        return {k: z[k] for k in z.files}


DIFF = "GKD − method"
CHECKS = (("cka_init", "CKA to its initialisation (held-out generic)"),
          ("cka_teacher", "CKA to the teacher (held-out generic)"),
          ("probe_patch", "linear probe R² to the teacher (held-out generic)"),
          ("teacher_agreement", "agreement with the teacher's segmenter (mIoU, held-out generic)"))


def run(cfg, setting: str, metrics: list[Path], per_image: list[Path], out_csv: Path, out_png: Path | None,
        spread_csv: Path | None = None, stage1: list[Path] = (), check_csv: Path | None = None,
        check_png: Path | None = None, stage2: list[Path] = (), teacher_task: Path | None = None,
        data: Path | None = None) -> pd.DataFrame:
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
            rec[f"{col} std"] = round(float(np.std(values, ddof=1)), 2) if len(values) > 1 else np.nan
        if name != REFERENCE:
            avg = np.array([r["avg"] for r in results])
            diff = np.mean(ref_avg - np.resize(avg, len(ref_avg)))
            low, high = intervals[name]  # of method − GKD: turned around
            rec.update({DIFF: round(float(diff), 2), "CI low": round(-high, 2), "CI high": round(-low, 2),
                        "beyond noise": bool(low > 0 or high < 0)})
        records.append(rec)
    df = pd.DataFrame.from_records(records)
    io.write_text(out_csv, df.to_csv(index=False))
    log.info("\n%s", df.to_string(index=False))
    if spread_csv is not None:
        commit = (json.loads(Path(metrics[1]).read_text()).get("provenance") or {}).get("commit")
        spread = pd.DataFrame.from_records(
            [{"Method": row_label(cfg, n), "sd": round(float(np.std([r["avg"] for r in runs[n]], ddof=1)), 2)
              if len(runs[n]) > 1 else np.nan, "runs": len(runs[n]),
              "mean": round(float(np.mean([r["avg"] for r in runs[n]])), 2),
              "measured": f"seeds {' '.join(str(x) for x in cfg.seeds)}, threads {cfg.threads or 'all cores'}"
                          + (f", commit {commit[:10]}" if commit else "")} for n in rows])
        io.write_text(spread_csv, spread.to_csv(index=False))
    if stage1 and check_csv is not None:
        checks = stage1_checks(cfg, stage1, runs, methods, stage2, teacher_task, data)
        io.write_text(check_csv, checks.to_csv(index=False))
        if check_png is not None:
            plots.stage1_check(checks, [c for c in CHECKS if c[0] in checks], check_png, f"{title(cfg, setting)}\nlabel-free checks of every stage-1 "
                                                          f"run against its target Avg")
    if out_png is not None:
        per_seed = {row_label(cfg, n): [r["avg"] for r in runs[n]] for n in rows}
        plots.seeds(per_seed, out_png, f"{title(cfg, setting)}\nAvg mIoU over unseen domains: "
                                       f"mean ± std over {len(cfg.seeds)} seeds (dots: single runs)")
    return df


def stage1_checks(cfg, stage1: list[Path], runs: dict[str, list[dict]], methods: list[str], stage2: list[Path] = (),
                  teacher_task: Path | None = None, data: Path | None = None) -> pd.DataFrame:
    """One row per stage-1 run: method, seed, its target Avg and the label-free checks of its last phase (and,
    given its stage-2 folder, the teacher's segmenter and the data, its agreement with the teacher)."""
    against = {}
    if stage2 or teacher_task is not None:
        if len(stage2) != len(stage1) or teacher_task is None or data is None:
            raise ConfigError(f"seeds-report: the teacher agreement needs --teacher-task, --data and one --stage2 "
                              f"folder per --stage1 folder; got {len(stage2)} for {len(stage1)}")
        from gkd import agreement  # torch: only where the agreement is measured
        against = agreement.checks(teacher_task, data)
    seen: dict[str, int] = {}
    records = []
    for i, directory in enumerate(stage1):
        report = json.loads((Path(directory) / "fidelity.json").read_text())
        method = report["method"]
        k = seen.get(method, 0)
        seen[method] = k + 1
        last = report["phases"][list(report["phases"])[-1]]
        generic = last.get("probe", {}).get("generic", {})
        if k >= len(cfg.seeds) or report["seed"] != cfg.seeds[k]:
            raise ConfigError(f"seeds-report: {directory} is seed {report['seed']}, expected the stage-1 folders "
                              f"seed-major in `seeds` order ({cfg.seeds}): stale dvc.yaml? run `gkd dag`")
        rec = {"Method": row_label(cfg, method), "seed": report["seed"], "Avg": runs[method][k]["avg"]}
        rec.update({key: generic.get(key, np.nan) for key, _ in CHECKS})
        rec.update({f"{t} R² (generic)": last["domains"].get("generic", {}).get(t, {}).get("r2", np.nan)
                    for t in ("token", "fea", "patch")})
        if against:
            if Path(stage2[i]).parent != Path(directory).parent:
                raise ConfigError(f"seeds-report: --stage2 {stage2[i]} is not the run of --stage1 {directory}")
            rec.update({column: check.of(Path(stage2[i])) for column, check in against.items()})
        records.append(rec)
    return pd.DataFrame.from_records(records)


def main(argv=None) -> None:
    p = common.parser(__doc__.splitlines()[0], selectors=("benchmark", "teacher", "student"))
    p.add_argument("--setting", default="f2l", choices=["f2l", "f2f"])
    p.input("--metrics", nargs="+", required=True, type=Path, help="teacher, then seed-major method metrics")
    p.input("--per-image", nargs="+", required=True, type=Path, help="per-image counts, same order")
    p.input("--stage1", nargs="*", type=Path, default=[], help="stage-1 folders of every seed run, seed-major")
    p.input("--stage2", nargs="*", type=Path, default=[], help="the same runs' stage-2 folders, same order")
    p.input("--teacher-task", type=Path, default=None, help="the Teacher row's segmenter (teacher_task)")
    p.input("--data", type=Path, default=None, help="the prepared benchmark (its held-out generic split)")
    p.output("--out", required=True, type=Path)
    p.output("--plot", type=Path, default=None)
    p.output("--spread-out", type=Path, default=None, help="each row's Avg mean, sd and runs (reference_spread format)")
    p.output("--check-out", type=Path, default=None, help="CSV: label-free stage-1 checks against target Avg per run")
    p.output("--check-plot", type=Path, default=None, help="PNG of the same")
    args = p.parse_args(argv)
    cfg = common.setup(args, READS, ("benchmark", "teacher", "student"))
    run(cfg, args.setting, args.metrics, args.per_image, args.out, args.plot, args.spread_out, args.stage1,
        args.check_out, args.check_plot, args.stage2, args.teacher_task, args.data)


if __name__ == "__main__":
    common.run_main(main)
