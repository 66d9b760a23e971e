"""Label-free stage-1 checks against target Avg over stage-1 runs made outside the DAG (a lever screen).

Each run is a folder holding ``stage1/fidelity.json`` (the distill stage's output) and ``metrics.json`` (its
stage 2 evaluated), or a DAG model folder (``WS/models/synthetic/dinov2_s14/vit_t6/seed1/gkd``, whose metrics
the DAG writes to the mirror path ``WS/metrics/.../seed1/gkd.json``); name them RECIPE=FOLDER:

    python benchmarks/stage1_screen.py --runs base=ws/exp/base/gkd-s0 base=ws/exp/base/gkd-s1 ... \
        --out results/stage1_screen.csv --plot docs/stage1_screen.png

``--append`` keeps the rows already in ``--out`` (a run listed again replaces its old row) and redraws the
figure over all of them; without ``--runs`` it only redraws the figure from ``--out``.

Writes one row per run (recipe, folder, target Avg, sim val, the checks) and the figure of target Avg against
each check with Spearman's rho (``gkd.plots.stage1_check``). Target Avg is reported here, never used to choose.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
from gkd import io, plots  # noqa: E402

# (column, label): what each phase's fidelity says on held-out generic / sim images
CHECKS = [("generic_fea_r2_1a", "1a: R² of the fea term on held-out generic"),
          ("generic_cka_init", "after stage 1: CKA to the initialisation (generic)"),
          ("generic_cka_teacher", "after stage 1: CKA to the teacher (generic)"),
          ("sim_probe", "after stage 1: linear probe R² (sim)")]


def metrics_file(folder: Path) -> Path:
    """``FOLDER/metrics.json``, or for a DAG model folder ``.../models/<rest>`` the DAG's ``.../metrics/<rest>.json``."""
    if (folder / "metrics.json").exists() or "models" not in folder.parts:
        return folder / "metrics.json"
    cut = len(folder.parts) - 1 - folder.parts[::-1].index("models")
    return Path(*folder.parts[:cut], "metrics", *folder.parts[cut + 1:]).with_suffix(".json")


def recipe_runs(items: list[str], required: str) -> list[tuple[str, Path]]:
    """``RECIPE=FOLDER`` arguments → (recipe, folder), each folder checked to hold ``required`` (a path in it)."""
    runs = []
    for item in items:
        recipe, sep, folder = item.partition("=")
        if not sep or not recipe:
            raise SystemExit(f"--runs: {item!r} is not RECIPE=FOLDER")
        if not (Path(folder) / required).is_file():
            raise SystemExit(f"--runs: {folder!r} holds no {required}")
        runs.append((recipe, Path(folder)))
    return runs


def row(recipe: str, folder: Path) -> dict:
    fid = json.loads((folder / "stage1" / "fidelity.json").read_text())
    metrics = json.loads(metrics_file(folder).read_text())
    phases = fid["phases"]
    last = phases[list(phases)[-1]]
    first = phases.get("1a", {}).get("domains", {}).get("generic", {})
    return {"Method": recipe, "run": str(folder), "Avg": metrics["avg"], "sim val": metrics["source"],
            "generic_fea_r2_1a": first.get("fea", {}).get("r2", float("nan")),
            "generic_cka_init": last["probe"]["generic"]["cka_init"],
            "generic_cka_teacher": last["probe"]["generic"]["cka_teacher"],
            "sim_probe": last["probe"]["sim"]["probe_patch"]}


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--runs", nargs="+", default=[],
                   help="RECIPE=FOLDER, one per stage-1 run (none: redraw --plot from the rows in --out)")
    p.add_argument("--out", type=Path, default=Path("results/stage1_screen.csv"))
    p.add_argument("--plot", type=Path, default=Path("docs/stage1_screen.png"))
    p.add_argument("--append", action="store_true", help="keep the rows already in --out")
    args = p.parse_args(argv)
    bad = [r for r in args.runs if "=" not in r]
    if bad:
        p.error(f"--runs takes RECIPE=FOLDER, got {bad[0]!r}")
    if not args.runs:  # redraw only
        if not args.out.exists():
            p.error(f"no --runs and no {args.out} to redraw the figure from")
        df = pd.read_csv(args.out)
    else:
        df = pd.DataFrame([row(recipe, Path(folder)) for recipe, folder in (r.split("=", 1) for r in args.runs)])
        if args.append and args.out.exists():
            kept = pd.read_csv(args.out)
            df = pd.concat([kept[~kept["run"].isin(df["run"])], df], ignore_index=True)
        io.write_text(args.out, df.round(4).to_csv(index=False))
    plots.stage1_check(df, CHECKS, args.plot, f"Stage-1 runs of the lever screen ({len(df)} runs): "
                                               "label-free checks against target Avg")
    print(df.round(3).to_string(index=False))


if __name__ == "__main__":
    main()
