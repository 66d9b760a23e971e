"""The torch-free part of every stage's command line: the params files and selector flags, logging, and the
one-line error exit. Kept apart from ``gkd.stages.common`` (which validates methods and decoders, and so
imports torch) for the stages that never need torch, such as ``manifest``."""
from __future__ import annotations

import argparse
import logging
import os
import sys
from typing import NoReturn

NOISY_LOGGERS = ("datasets", "accelerate", "timm", "filelock", "fsspec", "urllib3", "httpx", "huggingface_hub")


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
