"""Validation that needs the code registries: params → a config whose method options and decoder exist.

It sits above ``gkd.config`` (pure, torch-free: what Snakemake's parse uses) and the registries it checks
(``gkd.methods``, ``gkd.models.decoders``), so neither has to import the other.
"""
from __future__ import annotations

from pathlib import Path
from typing import Optional

from gkd import config
from gkd.methods import method_options
from gkd.models.decoders import DECODERS


def check_registered(cfg: config.Config) -> config.Config:
    """Every method entry builds its typed options; the decoder exists. Errors name the key and the choices."""
    DECODERS.lookup(cfg.adapt.decoder)
    for name in cfg.method_configs:
        method_options(cfg, name)
    return cfg


def from_dict(raw: dict) -> config.Config:
    return check_registered(config.from_dict(raw))


def load(paths: config.ParamsFiles = "params.yaml", **overrides: Optional[str]) -> config.Config:
    return check_registered(config.load(paths, **overrides))
