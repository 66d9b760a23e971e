"""What every stage CLI shares: argument parsing of the params file and selectors, logging, seeding."""
from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path
from typing import NoReturn

from gkd import config as config_mod
from gkd import validate
from gkd.errors import GKDError

log = logging.getLogger("gkd")


def parser(description: str, selectors: tuple[str, ...] = (), run: bool = False) -> argparse.ArgumentParser:
    """The shared flags: params file, selector overrides, and (student-side stages, ``run``) the run's
    seed and budget multiplier."""
    p = argparse.ArgumentParser(description=description)
    p.add_argument("--params", nargs="+", default=["params.yaml"],
                   help="params file, or several: later ones overlay earlier ones (default: params.yaml)")
    for name in selectors:
        p.add_argument(f"--{name}", default=None, help=f"{name} preset (overrides params.yaml's `{name}`)")
    if run:
        p.add_argument("--seed", type=int, default=None,
                       help="seed of this run's student-side randomness (default: params.yaml's `seed`)")
        p.add_argument("--budget", type=int, default=None,
                       help="stage-1 and task epochs x this (budget curve; default 1)")
    return p


def setup(args: argparse.Namespace, selectors: tuple[str, ...] = ()) -> config_mod.Config:
    """Logging + validated config (with this run's seed and budget); a bad value exits with one clear line."""
    logging.basicConfig(level=os.environ.get("GKD_LOG", "INFO"), format="%(asctime)s %(name)s: %(message)s",
                        datefmt="%H:%M:%S")
    # our own bars are enough; by environment, so that a stage that never reads a dataset does not pay the
    # ~0.5 s of importing `datasets` (it reads this when a stage does import it)
    os.environ.setdefault("HF_DATASETS_DISABLE_PROGRESS_BARS", "1")
    for noisy in ("datasets", "accelerate", "timm", "filelock", "fsspec", "urllib3", "httpx", "huggingface_hub"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    try:
        cfg = validate.load(args.params, **{s: getattr(args, s) for s in selectors})
        cfg = config_mod.for_run(cfg, seed=getattr(args, "seed", None), budget=getattr(args, "budget", None))
    except GKDError as err:
        fail(err)
    set_threads(cfg.threads)
    return cfg


def weights_cli(role: str, description: str, argv=None) -> tuple[argparse.Namespace, config_mod.Config]:
    """The command line of both weight stages: the ``role`` selector (teacher | student), --data, --out."""
    p = parser(description, selectors=("benchmark", role))
    p.add_argument("--data", required=True, type=Path, help="prepared benchmark (read by weights trained here)")
    p.add_argument("--out", required=True, type=Path, help=f"output folder models/{role}s/<{role}>")
    args = p.parse_args(argv)
    return args, setup(args, ("benchmark", role))


def set_threads(threads: int) -> None:
    """Pin torch's intra-op threads (accelerate launch and Snakemake set OMP_NUM_THREADS differently)."""
    import torch
    n = threads or len(os.sched_getaffinity(0))
    torch.set_num_threads(n)
    os.environ["OMP_NUM_THREADS"] = str(n)


def fail(err: Exception) -> NoReturn:
    print(f"error: {err}", file=sys.stderr)
    raise SystemExit(2)


def run_main(fn, argv=None) -> None:
    """Run a stage's main with a GKDError (bad input or artifact) turned into one clear message and exit 2."""
    try:
        fn(argv)
    except GKDError as err:
        fail(err)
