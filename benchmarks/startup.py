"""Start-up of a stage that does no work, against the imports it cannot avoid (issue 13's start-up figure).

The stage is `student_weights` of a randomly initialised student (``vit_t6_random``), launched exactly as
the DAG launches every stage (``python -m gkd.launch --config_file workflow/accelerate.yaml -m ...``).
Beside it, in the same rounds (interleaved, so machine noise hits every row alike), the floor any stage
that builds a timm model pays: a bare interpreter, ``import torch``, ``import torchvision``, ``import timm``.
The figures that transfer between machines are the ratios to ``import timm`` and the stage's own
overhead (stage − ``import timm``): this CPU's speed drifts by 2× or more between hours.

    nice -n 19 python benchmarks/startup.py                      # 7 rounds → results/startup.json
    python benchmarks/startup.py --rounds 3 --out /tmp/startup.json
"""
from __future__ import annotations

import argparse
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
from gkd import io  # noqa: E402
from gkd.dag import LAUNCH  # noqa: E402
from provenance import source_commit  # noqa: E402  (benchmarks/, the script's folder)

STUDENT = "vit_t6_random"
IMPORTS = {"python": "pass", "import torch": "import torch", "import torchvision": "import torchvision",
           "import timm": "import timm"}


def timed(cmd: list[str], env: dict) -> float:
    start = time.perf_counter()
    done = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - start
    if done.returncode != 0:
        raise SystemExit(f"{' '.join(cmd)} failed (exit {done.returncode}):\n{done.stderr[-3000:]}")
    return wall


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rounds", type=int, default=7, help="interleaved rounds (the first warms the page cache "
                                                          "and is dropped)")
    p.add_argument("--params", type=Path, default=ROOT / "params.yaml")
    p.add_argument("--data", type=Path, default=None,
                   help="a prepared synthetic benchmark (default: prepare one in a temp folder first, untimed)")
    p.add_argument("--out", type=Path, default=ROOT / "results" / "startup.json")
    args = p.parse_args(argv)
    if args.rounds < 2:
        p.error(f"--rounds must be >= 2 (the first is dropped), got {args.rounds}")

    env = dict(os.environ, PYTHONPATH=str(ROOT / "src"), HF_HUB_OFFLINE="1", HF_DATASETS_OFFLINE="1")
    py = sys.executable
    with tempfile.TemporaryDirectory(prefix="startup_") as tmp:
        tmp = Path(tmp)
        data = args.data
        if data is None:
            data = tmp / "prepared"
            timed([py, "-m", "gkd.stages.prepare", "--params", str(args.params), "--benchmark", "synthetic",
                   "--out", str(data)], env)
        launch = LAUNCH.replace("python", py, 1).split()
        stage = [*launch, "gkd.stages.student_weights", "--params", str(args.params), "--benchmark", "synthetic",
                 "--student", STUDENT, "--data", str(data), "--out"]
        rows = {name: [] for name in [*IMPORTS, "stage"]}
        for r in range(args.rounds):
            for name, code in IMPORTS.items():
                rows[name].append(timed([py, "-c", code], env))
            rows["stage"].append(timed([*stage, str(tmp / f"weights_{r}")], env))
            print(f"round {r}: " + ", ".join(f"{k} {v[-1]:.2f} s" for k, v in rows.items()), flush=True)

    kept = {k: v[1:] for k, v in rows.items()}
    median = {k: round(statistics.median(v), 2) for k, v in kept.items()}
    overhead = [s - t for s, t in zip(kept["stage"], kept["import timm"])]  # same round, same machine state
    ratio = [s / t for s, t in zip(kept["stage"], kept["import timm"])]
    summary = dict(median_s=median,
                   stage_over_import_timm=round(statistics.median(ratio), 2),
                   stage_minus_import_timm_s=round(statistics.median(overhead), 2))
    io.write_json(args.out, dict(
        what=f"wall time of the `student_weights` stage of `{STUDENT}` through gkd.launch, and of the imports "
             "it cannot avoid, in interleaved rounds (first round dropped)",
        command=" ".join(stage) + " <out>",
        commit=source_commit(), python=platform.python_version(), cpu_count=os.cpu_count(),
        rounds_s={k: [round(x, 2) for x in v] for k, v in rows.items()}, **summary))
    print(f"medians {median}; stage / import timm {summary['stage_over_import_timm']}; "
          f"stage - import timm {summary['stage_minus_import_timm_s']} s → {args.out}")


if __name__ == "__main__":
    main()
