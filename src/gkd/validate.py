"""Plan-time validation: params → a config whose every method entry, decoder and dataset name exists.

Run once per plan — by ``gkd check``, ``gkd dag`` and the Snakefile's parse (``gkd.dag.groups_of``) — not by
every stage: a stage imports only the method or adapter it runs (``gkd.registry.ModuleRegistry``), so it
cannot check the others, and its code dependencies stay what it executes. It sits above ``gkd.config``
(pure, torch-free) and the registries it checks, so neither has to import the other.
"""
from __future__ import annotations

from typing import Optional

from gkd import config
from gkd.data.adapters import ADAPTERS
from gkd.data.real import check_datasets
from gkd.methods import METHODS, method_options
from gkd.models.decoders import DECODERS


def check_registered(cfg: config.Config) -> config.Config:
    """Every method entry builds its typed options; the decoder, every benchmark's adapter and every
    `datasets:` entry exist. Errors name the key and the choices."""
    METHODS.load_all()  # a module that fails to import is an error now, not in the first stage that needs it
    DECODERS.lookup(cfg.adapt.decoder)
    for name in cfg.method_configs:
        method_options(cfg, name)
    for name, bench in cfg.raw["benchmarks"].items():  # the names only: importing an adapter is prepare's job
        config.choose(f"benchmarks.{name}.adapter", bench["adapter"], ADAPTERS.choices())
    check_datasets(cfg.datasets)
    return cfg


def from_dict(raw: dict) -> config.Config:
    return check_registered(config.from_dict(raw))


def load(paths: config.ParamsFiles = "params.yaml", **overrides: Optional[str]) -> config.Config:
    return check_registered(config.load(paths, **overrides))
