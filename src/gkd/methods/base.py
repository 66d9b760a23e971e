"""What a method is (``Method``, and ``LabelFreeMethod`` for those with a stage 1), the registry of
methods, and how a params entry becomes one.

The registry is lazy (``gkd.registry.ModuleRegistry``): a method named ``x`` lives in ``gkd.methods.x``, and
building it imports that module only — a stage runs, and depends on, the one method it trains.
"""
from __future__ import annotations

import abc
from dataclasses import dataclass
from typing import ClassVar

from gkd.config import build
from gkd.registry import ModuleRegistry

METHODS = ModuleRegistry("method", "gkd.methods", "register_method")
register_method = METHODS.register


@dataclass(frozen=True)
class NoOptions:
    pass


class Method:
    name: ClassVar[str]
    display: ClassVar[str]            # row label in the tables
    Options: ClassVar[type] = NoOptions
    stage1: ClassVar[bool] = False    # True for a LabelFreeMethod: it has a `distill` stage before `adapt`
    teacher_inputs: ClassVar[tuple[str, ...]] = ()   # what task training reads: names in gkd.features.SIGNALS
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


class LabelFreeMethod(Method, abc.ABC):
    """A method with a label-free stage 1 (``gkd.stages.distill``): images only, the frozen teacher's tokens
    (``gkd.features.STAGE1_SIGNALS``) on exactly the student's view as targets. What the stage calls:

    * ``stage1_module(student, teacher_dim)``: the trainable module (the student and its fresh heads) whose
      ``forward(images, teacher_tokens, mask)`` returns the named loss terms (``loss`` is optimised) and whose
      ``predictions`` give each term's (prediction, target) pair to the fidelity report (``gkd.fidelity``);
    * ``mask_ratio``: the share of patches the masked view hides for the first half of each batch (0: none).

    Stage 2 (``adapt``) then starts from the distilled backbone, frozen or not (``frozen_backbone``).
    """
    stage1 = True

    @abc.abstractmethod
    def stage1_module(self, student, teacher_dim: int):
        """The student wrapped with this method's stage-1 heads and objective."""

    @property
    @abc.abstractmethod
    def mask_ratio(self) -> float:
        """Patches hidden in the masked view of the first half of each batch."""


def method_options(cfg, name: str):
    """The typed options of ``method_configs.<name>`` (unknown keys and wrong types are errors)."""
    mc = cfg.method(name)
    cls = METHODS.lookup(mc.algo)
    return cls, build(cls.Options, mc.options, f"method_configs.{name}")


def build_method(cfg, name: str) -> Method:
    cls, options = method_options(cfg, name)
    return cls(options)


def method_module(cfg, name: str) -> str:
    """The module that implements ``method_configs.<name>`` (its ``algo``), without importing it (gkd.dag)."""
    return METHODS.module(cfg.method(name).algo)
