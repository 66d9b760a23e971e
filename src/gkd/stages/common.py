"""What every stage CLI shares: argument parsing of the params file and selectors, logging, seeding."""
from __future__ import annotations

import argparse
import logging
import os
from pathlib import Path

from gkd import config as config_mod
from gkd import validate
from gkd.errors import GKDError
from gkd.stages.args import CURRENT, configure_logging, fail, parser, record_provenance  # noqa: F401  (parser: every stage's CLI)

log = logging.getLogger("gkd")


def setup(args: argparse.Namespace, selectors: tuple[str, ...] = ()) -> config_mod.Config:
    """Logging + validated config (with this run's seed and budget); a bad value exits with one clear line."""
    configure_logging()
    try:
        cfg = validate.load(args.params, **{s: getattr(args, s) for s in selectors})
        cfg = config_mod.for_run(cfg, seed=getattr(args, "seed", None), budget=getattr(args, "budget", None))
    except GKDError as err:
        fail(err)
    set_threads(cfg.threads)
    CURRENT.update(args=args, config=cfg.raw)
    return cfg


def weights_cli(role: str, description: str, argv=None) -> tuple[argparse.Namespace, config_mod.Config]:
    """The command line of both weight stages: the ``role`` selector (teacher | student), --data, --out."""
    p = parser(description, selectors=("benchmark", role))
    p.input("--data", required=True, type=Path, help="prepared benchmark (read by weights trained here)")
    p.output("--out", required=True, type=Path, help=f"output folder models/{role}s/<{role}>")
    args = p.parse_args(argv)
    return args, setup(args, ("benchmark", role))


def set_threads(threads: int) -> None:
    """Pin torch's intra-op threads (accelerate launch and Snakemake set OMP_NUM_THREADS differently)."""
    import torch
    n = threads or len(os.sched_getaffinity(0))
    torch.set_num_threads(n)
    os.environ["OMP_NUM_THREADS"] = str(n)


def run_main(fn, argv=None) -> None:
    """Run a stage's main with a GKDError (bad input or artifact) turned into one clear message and exit 2;
    after a success, its provenance record (main process only)."""
    try:
        fn(argv)
    except GKDError as err:
        fail(err)
    record_provenance()
