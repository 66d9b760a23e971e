"""A row's spread over the student-initialisation draw, which the seeds never vary.

`student_weights` (the student's image-level pretraining on `generic`) is one draw shared by every method and
every seed of the DAG. This script redraws it — the same stage with params `seed` set to each of ``--draws``
(its crops, order and initial weights), everything else the workspace's — and runs the selected methods on each
draw with the DAG's own stage commands (stage 1 where the method has one, stage 2, evaluation; stage seeds as
in params.yaml). In a workspace where the main target has run (README command 1):

    python benchmarks/init_draw.py --draws 1 2 3 4 --methods student_frozen student_only gkd

The draw equal to params `seed` is the DAG's own: its metrics are read, not rerun. Each draw's artifacts go to
``<work>/init<k>/`` (default exp/init_draw; a finished method is not rerun, so an interrupted run continues).
Writes ``--out`` (default results/init_draw.json): per method the Avg of every draw, their mean and sd, and per
method its difference to each ``--reference`` method on the same draw (paired), with its mean, sd and 95 %
t-interval.
``--spread results/reference_spread.csv`` also writes each method's sd over the draws into that file (columns
``init_sd``, ``init_draws`` and ``init_measured``, by row label), which the F2L table then shows beside each row.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import subprocess
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
sys.path.insert(0, str(Path(__file__).resolve().parent))
from gkd import dag, io  # noqa: E402
from gkd.config import load  # noqa: E402
from provenance import source_commit  # noqa: E402  (benchmarks/, the script's folder)


def draw_stages(cfg, shapes, methods: list[str], folder: Path) -> list[dag.Stage]:
    """The DAG's student_weights and per-method stages, reading and writing ``folder`` instead of the DAG's paths."""
    values = dag.selector_values(cfg)
    run = dataclasses.replace(dag.main_run(cfg), methods=tuple(methods))
    student = dag.resolve(dag.student_init(run.student), values)
    moved = {student: folder / "student"}
    for m in methods:
        for phase in ("stage1", "stage2"):
            moved[dag.resolve(f"{run.model(m)}/{phase}", values)] = folder / m / phase
        moved[dag.resolve(f"{run.live(m)}/stage1", values)] = folder / m / "log1"
        moved[dag.resolve(f"{run.live(m)}/stage2", values)] = folder / m / "log2"
        moved[dag.resolve(run.metrics(m), values)] = folder / m / "metrics.json"
        moved[dag.resolve(run.per_image(m), values)] = folder / m / "per_image.npz"
    out = []
    for stage in [dag.student_weights_stage(cfg, "student_weights", run.student)] + \
            [s for s in dag.run_stages(cfg, run, shapes) if not s.module.endswith("report")]:
        resolved = [(f, dag.resolve(v, values) if v else v) for f, v in stage.flags]
        out.append(dataclasses.replace(stage, flags=[(f, str(moved.get(v, v)) if v else v) for f, v in resolved]))
    return out


def output_of(stage: dag.Stage) -> Path:
    return Path(dict(stage.flags)["--out"])


def run_draw(cfg, shapes, methods, draw: int, folder: Path) -> dict[str, dict]:
    folder.mkdir(parents=True, exist_ok=True)
    overlay = folder / "seed.yaml"
    overlay.write_text(f"seed: {draw}\n")  # student_weights only: every other stage reads params.yaml alone
    for stage in draw_stages(cfg, shapes, methods, folder):
        if output_of(stage).exists():
            continue  # written atomically by the stage: present means complete
        params = f"params.yaml {overlay}" if stage.module.endswith("student_weights") else "params.yaml"
        print(f"draw {draw}: {stage.name}", flush=True)
        command = stage.command_with(params).split(" ", 1)  # "python -m ...": this interpreter's python
        subprocess.run(f"{sys.executable} {command[1]}", shell=True, check=True)
    return {m: json.loads((folder / m / "metrics.json").read_text()) for m in methods}


def summary(avgs: dict[int, dict[str, float]], methods: list[str], references: list[str]) -> dict:
    from scipy import stats
    draws = sorted(avgs)
    out = {"draws": draws, "methods": {}, "paired": {}}
    for m in methods:
        v = np.array([avgs[d][m] for d in draws])
        out["methods"][m] = {"avg": {str(d): round(avgs[d][m], 4) for d in draws}, "mean": round(float(v.mean()), 2),
                             "sd": round(float(v.std(ddof=1)), 2) if len(v) > 1 else None}
    for reference in references:
        out["paired"][reference] = {}
        for m in methods:
            if m == reference:
                continue
            diff = np.array([avgs[d][m] - avgs[d][reference] for d in draws])
            rec = {"per_draw": {str(d): round(float(x), 2) for d, x in zip(draws, diff)}, "mean": round(float(diff.mean()), 2)}
            if len(diff) > 1:
                half = stats.t.ppf(0.975, len(diff) - 1) * diff.std(ddof=1) / np.sqrt(len(diff))
                rec |= {"sd": round(float(diff.std(ddof=1)), 2),
                        "ci95": [round(float(diff.mean() - half), 2), round(float(diff.mean() + half), 2)]}
            out["paired"][reference][m] = rec
    return out


def merge_spread(path: Path, cfg, result: dict) -> None:
    """Each method's sd over the draws into a reference-spread CSV (gkd.stages.report reads it by row label)."""
    import pandas as pd
    from gkd.tables import row_label
    ref = pd.read_csv(path).set_index("Method")
    for column in ("init_sd", "init_draws", "init_measured"):
        if column not in ref.columns:
            ref[column] = None
    how = (f"student_weights draws {', '.join(map(str, result['draws']))}, stage seed {result['stage_seed']}, "
           f"threads {'/'.join(map(str, result['threads']))}, commit {result['commit']} (benchmarks/init_draw.py)")
    for method, rec in result["methods"].items():
        ref.loc[row_label(cfg, method), ["init_sd", "init_draws", "init_measured"]] = [rec["sd"], len(rec["avg"]), how]
    ref["init_draws"] = ref["init_draws"].astype("Int64")
    io.write_text(path, ref.reset_index().to_csv(index=False))


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--draws", nargs="+", type=int, required=True, help="params `seed` values of student_weights")
    p.add_argument("--methods", nargs="+", required=True, help="method_configs keys to run on every draw")
    p.add_argument("--reference", nargs="+", default=["student_frozen"], help="methods paired differences are taken to")
    p.add_argument("--work", type=Path, default=Path("exp/init_draw"))
    p.add_argument("--out", type=Path, default=Path("results/init_draw.json"))
    p.add_argument("--spread", type=Path, default=None, help="a reference-spread CSV to write each method's sd into")
    args = p.parse_args(argv)
    cfg = load("params.yaml")
    unknown = [m for m in args.methods if m not in cfg.method_configs]
    if unknown:
        p.error(f"unknown method {unknown[0]!r}; choose from {sorted(cfg.method_configs)}")
    outside = [r for r in args.reference if r not in args.methods]
    if outside:
        p.error(f"--reference {outside[0]!r} is not among --methods {args.methods}")
    shapes = dag.method_shapes(cfg, args.methods)
    metrics = {}
    for draw in dict.fromkeys(args.draws):
        if draw == cfg.seed:  # the DAG's own draw
            run = dag.main_run(cfg)
            paths = {m: Path(dag.resolve(run.metrics(m), dag.selector_values(cfg))) for m in args.methods}
            missing = [str(path) for path in paths.values() if not path.is_file()]
            if missing:
                p.error(f"draw {draw} is params `seed`, the DAG's own draw, but {missing[0]} is missing: run the "
                        f"main target (with these methods in `methods`) first, or leave {draw} out")
            metrics[draw] = {m: json.loads(path.read_text()) for m, path in paths.items()}
        else:
            metrics[draw] = run_draw(cfg, shapes, args.methods, draw, args.work / f"init{draw}")
    avgs = {d: {m: rec["avg"] for m, rec in per.items()} for d, per in metrics.items()}
    # what ran the stages, from the metrics files themselves (commit, device, threads, torch): not this machine
    made = sorted({json.dumps(rec.get("provenance"), sort_keys=True) for per in metrics.values() for rec in per.values()})
    made_by = [json.loads(m) for m in made]
    result = summary(avgs, args.methods, args.reference) | {
        "threads": sorted({m["threads"] for m in made_by if m and m.get("threads")}), "stage_seed": cfg.seed,
        "commit": source_commit(), "made_by": made_by}
    io.write_json(args.out, result)
    if args.spread is not None:
        merge_spread(args.spread, cfg, result)
    for m, rec in result["methods"].items():
        print(f"{m:>16}: " + " / ".join(f"{v:.2f}" for v in rec["avg"].values()) + f"  mean {rec['mean']}  sd {rec['sd']}")
    for reference, paired in result["paired"].items():
        for m, rec in paired.items():
            print(f"{m:>16} − {reference}: mean {rec['mean']}  sd {rec.get('sd')}  95 % {rec.get('ci95')}")


if __name__ == "__main__":
    main()
