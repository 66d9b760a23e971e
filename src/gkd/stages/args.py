"""The torch-free part of every stage's command line: the params files and selector flags, logging, and the
one-line error exit. Kept apart from ``gkd.stages.common`` (which validates methods and decoders, and so
imports torch) for the stages that never need torch, such as ``manifest``."""
from __future__ import annotations

import argparse
import logging
import os
import sys
from typing import NoReturn

from gkd import provenance, registry

CURRENT: dict = {}  # this process's parsed command line and resolved params (for its provenance record)
NOISY_LOGGERS = ("datasets", "accelerate", "timm", "filelock", "fsspec", "urllib3", "httpx", "huggingface_hub")


class StageParser(argparse.ArgumentParser):
    """An argument parser that knows which flags name the stage's inputs and outputs (``input`` / ``output``
    instead of ``add_argument``): the stage's provenance record (``gkd.provenance``) hashes exactly those."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.roles: dict[str, list[str]] = {"inputs": [], "outputs": []}

    def input(self, *flags, **kwargs):
        action = self.add_argument(*flags, **kwargs)
        self.roles["inputs"].append(action.dest)
        return action

    def output(self, *flags, **kwargs):
        action = self.add_argument(*flags, **kwargs)
        self.roles["outputs"].append(action.dest)
        return action

    def parse_args(self, args=None, namespace=None):
        parsed = super().parse_args(args, namespace)
        parsed.io_roles = {role: {dest: _paths(getattr(parsed, dest, None)) for dest in dests}
                           for role, dests in self.roles.items()}
        return parsed


def _paths(value) -> list[str]:
    if value is None:
        return []
    return [str(v) for v in value] if isinstance(value, (list, tuple)) else [str(value)]


def parser(description: str, selectors: tuple[str, ...] = (), run: bool = False) -> StageParser:
    """The shared flags: params file, selector overrides, and (student-side stages, ``run``) the run's
    seed and budget multiplier."""
    p = StageParser(description=description)
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


def configure_logging() -> None:
    """Concise logs: our own lines at GKD_LOG (INFO), third-party libraries at WARNING, no dataset bars."""
    logging.basicConfig(level=os.environ.get("GKD_LOG", "INFO"), format="%(asctime)s %(name)s: %(message)s",
                        datefmt="%H:%M:%S")
    # by environment, so that a stage that never reads a dataset does not pay the ~0.5 s of importing
    # `datasets` (it reads this when a stage does import it)
    os.environ.setdefault("HF_DATASETS_DISABLE_PROGRESS_BARS", "1")
    for noisy in NOISY_LOGGERS:
        logging.getLogger(noisy).setLevel(logging.WARNING)


def fail(err: Exception) -> NoReturn:
    print(f"error: {err}", file=sys.stderr)
    raise SystemExit(2)


def record_provenance() -> None:
    """After a stage succeeded: ``logs/provenance/<first output>.json`` with the hashes of what it read and
    wrote, its code and its environment (``gkd.provenance``); the main process only."""
    args = CURRENT.get("args")
    if args is None or not hasattr(args, "io_roles") or int(os.environ.get("RANK", "0")) != 0:
        return
    main_spec = getattr(sys.modules.get("__main__"), "__spec__", None)
    module = main_spec.name if main_spec is not None else "?"
    rec = provenance.build_record(module, sys.argv[1:], args.io_roles["inputs"], args.io_roles["outputs"],
                                  getattr(args, "params", []), CURRENT.get("config"), registry.LOADED)
    path = provenance.write_record(rec)
    if path is not None:
        logging.getLogger("gkd").info("provenance: %s", path)
