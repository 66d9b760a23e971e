"""How far a recipe's stage-1 seeds agree on held-out generic images (patch CKA), against their target Avg.

Do two stage-1 seeds of one recipe learn the same features? Issue 21's second label-free candidate for a
check that predicts: no target image is read, target Avg is only reported.

Each run is a stage-1 model folder (``stage1/`` inside, as the DAG writes it) named RECIPE=FOLDER; its
metrics are found as ``benchmarks/stage1_screen.py`` finds them. For every pair of runs of one recipe: the
linear CKA of their final-norm patch tokens on the prepared benchmark's held-out ``generic`` split (centre
crops, as the fidelity check reads them). Per run, its agreement is the mean CKA to the other seeds of its
recipe; per recipe, the mean over its pairs beside the sd of its runs' target Avg:

    python benchmarks/seed_agreement.py --data ws/data/prepared/synthetic \
        --runs base=ws/models/synthetic/dinov2_s14/vit_t6/gkd base=ws/models/.../seed1/gkd ... \
        --out results/seed_agreement.csv

The prediction, written down before the first run: a recipe whose seeds agree more has the smaller seed
spread of target Avg, and within a recipe a run that agrees more with its siblings scores nearer their mean.
"""
from __future__ import annotations

import argparse
import itertools
import json
import sys
from pathlib import Path

import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
sys.path.insert(0, str(Path(__file__).resolve().parent))
from gkd import fidelity, io  # noqa: E402
from gkd.data.prepared import read_meta  # noqa: E402
from gkd.models.artifacts import load_backbone  # noqa: E402
from gkd.stages.distill import heldout_sets  # noqa: E402
from stage1_screen import metrics_file, recipe_runs  # noqa: E402


def parse_runs(items: list[str]) -> list[tuple[str, Path]]:
    runs = recipe_runs(items, "stage1/backbone.json")
    counts = pd.Series([r for r, _ in runs]).value_counts()
    if (counts < 2).any():
        raise SystemExit(f"--runs: every recipe needs two runs at least; {', '.join(counts[counts < 2].index)} has one")
    return runs


def agreement(runs: list[tuple[str, Path]], data: Path, batch_size: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(one row per run: recipe, run, Avg, agreement; one row per pair of runs of a recipe: their CKA)."""
    meta = read_meta(data)
    generic, _ = heldout_sets(data, meta)["generic"]
    tokens = {folder: fidelity.tokens(load_backbone(folder / "stage1"), generic, batch_size) for _, folder in runs}
    pairs = [{"Method": recipe, "a": str(a), "b": str(b), "cka": fidelity.patch_cka(tokens[a], tokens[b])}
             for recipe in dict.fromkeys(r for r, _ in runs)
             for a, b in itertools.combinations([f for r, f in runs if r == recipe], 2)]
    pairs = pd.DataFrame(pairs)
    rows = []
    for recipe, folder in runs:
        of_recipe = pairs[pairs["Method"] == recipe]  # a folder named in two recipes is compared within each
        mine = of_recipe[(of_recipe["a"] == str(folder)) | (of_recipe["b"] == str(folder))]
        avg = json.loads(metrics_file(folder).read_text())["avg"]
        rows.append({"Method": recipe, "run": str(folder), "Avg": avg, "agreement": round(mine["cka"].mean(), 5)})
    return pd.DataFrame(rows), pairs


def summary(per_run: pd.DataFrame, pairs: pd.DataFrame) -> pd.DataFrame:
    by = per_run.groupby("Method", sort=False)
    out = pd.DataFrame({"runs": by.size(), "Avg mean": by["Avg"].mean(), "Avg sd": by["Avg"].std(ddof=1),
                        "pairwise CKA": pairs.groupby("Method", sort=False)["cka"].mean(),
                        "pairwise CKA min": pairs.groupby("Method", sort=False)["cka"].min()})
    # within a recipe: does a run that agrees more with its siblings score nearer their mean?
    per_run = per_run.assign(off=lambda d: (d["Avg"] - d.groupby("Method")["Avg"].transform("mean")).abs())
    out["rho(agreement, |Avg - mean|)"] = per_run.groupby("Method", sort=False).apply(
        lambda d: d["agreement"].corr(d["off"], method="spearman") if len(d) > 2 else float("nan"),
        include_groups=False)
    return out.round(4).reset_index()


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--runs", nargs="+", required=True, help="RECIPE=FOLDER, two runs or more per recipe")
    p.add_argument("--data", type=Path, required=True, help="the prepared benchmark the runs were trained on")
    p.add_argument("--out", type=Path, default=Path("results/seed_agreement.csv"))
    p.add_argument("--batch-size", type=int, default=32)
    args = p.parse_args(argv)
    runs = parse_runs(args.runs)
    per_run, pairs = agreement(runs, args.data, args.batch_size)
    table = summary(per_run, pairs)
    io.write_text(args.out, per_run.to_csv(index=False))
    io.write_text(args.out.with_name(args.out.stem + "_recipes.csv"), table.to_csv(index=False))
    print(per_run.to_string(index=False))
    print(table.to_string(index=False))
    if len(table) > 2:
        rho = table["pairwise CKA"].corr(table["Avg sd"], method="spearman")
        print(f"over {len(table)} recipes: Spearman rho(pairwise CKA, Avg sd) = {rho:.2f}")


if __name__ == "__main__":
    main()
