"""What every stage CLI shares: argument parsing of the params file and selectors, logging, seeding, and the
stage's view of the config (only the keys its ``READS`` declares: ``gkd.contract``)."""
from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path

from gkd import config as config_mod
from gkd import contract
from gkd.contract import Reads  # noqa: F401  (every stage declares its READS with it)
from gkd.errors import GKDError
from gkd.stages.args import CURRENT, configure_logging, fail, parser, record_provenance  # noqa: F401  (parser: every stage's CLI)

log = logging.getLogger("gkd")


def setup(args: argparse.Namespace, reads: Reads, selectors: tuple[str, ...] = ()) -> contract.StageConfig:
    """Logging + the config (with this run's seed and budget) limited to what the stage declared it reads; a
    bad value exits with one clear line. Method entries, decoders and adapters beyond the one the stage runs
    are validated at plan time (``gkd check``, ``gkd dag``, the Snakefile), not here: the stage imports only
    its own."""
    configure_logging()
    try:
        cfg = config_mod.load(args.params, **{s: getattr(args, s) for s in selectors})
        cfg = config_mod.for_run(cfg, seed=getattr(args, "seed", None), budget=getattr(args, "budget", None))
        view = contract.StageConfig(cfg, reads, stage_name(reads), method=getattr(args, "method", None),
                                    recipe_preset=contract.recipe_preset(cfg, reads))
    except GKDError as err:
        fail(err)
    set_threads(cfg.threads)
    CURRENT.update(args=args, config=cfg.raw)
    return view


def stage_name(reads: Reads) -> str:
    """The stage module that declared ``reads`` (for the contract's messages): `distill`, `adapt`, ..."""
    for module in list(sys.modules.values()):
        if getattr(module, "READS", None) is reads:
            spec = getattr(module, "__spec__", None)
            return (spec.name if spec is not None else module.__name__).rsplit(".", 1)[-1]
    return "?"


def weights_cli(role: str, description: str, reads: Reads, argv=None) -> tuple[argparse.Namespace, contract.StageConfig]:
    """The command line of both weight stages: the ``role`` selector (teacher | student), --data, --out."""
    p = parser(description, selectors=("benchmark", role))
    p.input("--data", required=True, type=Path, help="prepared benchmark (read by weights trained here)")
    p.output("--out", required=True, type=Path, help=f"output folder models/{role}s/<{role}>")
    args = p.parse_args(argv)
    return args, setup(args, reads, ("benchmark", role))


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
