"""Proteus (ICLR 2025): task-agnostic feature distillation, then ordinary end-to-end fine-tuning.

Stage 1 uses the same three MSE objectives as GKD on the same masked/unmasked views
(``gkd.methods.representation``), but with plain LayerNorm+Linear heads (no QSD) and the patch loss scored
at the *masked* positions only. Stage 2 fine-tunes the whole student (backbone and decoder) on source labels.
"""
from __future__ import annotations

from dataclasses import dataclass

from torch import nn

from gkd.methods.base import LabelFreeMethod, register_method
from gkd.methods.representation import RepresentationDistiller, RepresentationOptions


@dataclass(frozen=True)
class ProteusOptions(RepresentationOptions):
    pass


@register_method
class Proteus(LabelFreeMethod):
    name = "proteus"
    display = "+Proteus"
    Options = ProteusOptions

    def stage1_module(self, student: nn.Module, teacher_dim: int) -> RepresentationDistiller:
        o = self.options
        return RepresentationDistiller(student, teacher_dim, qsd=False, weights=o.weights,
                                       patch_loss_masked_only=True)

    @property
    def mask_ratio(self) -> float:
        return self.options.mask_ratio
