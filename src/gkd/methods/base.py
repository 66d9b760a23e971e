"""What a method is (``Method``), the registry of methods, and how a params entry becomes one."""
from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from gkd.config import build
from gkd.registry import Registry

METHODS = Registry("method")
register_method = METHODS.register


@dataclass(frozen=True)
class NoOptions:
    pass


class Method:
    name: ClassVar[str]
    display: ClassVar[str]            # row label in the tables
    Options: ClassVar[type] = NoOptions
    stage1: ClassVar[bool] = False
    teacher_inputs: ClassVar[tuple[str, ...]] = ()   # names in gkd.features.SIGNALS
    student_taps: ClassVar[tuple[int, ...]] = ()     # student blocks whose patch tokens the task terms need

    def __init__(self, options):
        self.options = options

    def frozen_backbone(self) -> bool:
        """Stage 2 on a frozen backbone (GKD) or end-to-end task training (every other method)."""
        return False

    def label(self, key: str) -> str:
        """Row label in the tables: the display name, plus the params key for a variant (ablations)."""
        return self.display if key == self.name else f"{self.display} [{key}]"

    def task_module(self, **shapes):
        """Extra trainable student-side modules of the task loss (align convs, generators), or None."""
        return None

    def task_terms(self, task, **outputs) -> dict:
        """Distillation terms added to CE during task training (unweighted; see task_weights)."""
        return {}

    def task_weights(self) -> dict[str, float]:
        return {}


def method_options(cfg, name: str):
    """The typed options of ``method_configs.<name>`` (unknown keys and wrong types are errors)."""
    mc = cfg.method(name)
    cls = METHODS.lookup(mc.algo)
    return cls, build(cls.Options, mc.options, f"method_configs.{name}")


def build_method(cfg, name: str) -> Method:
    cls, options = method_options(cfg, name)
    return cls(options)
