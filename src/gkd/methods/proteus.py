"""Proteus (ICLR 2025): task-agnostic feature distillation, then ordinary end-to-end fine-tuning.

Stage 1 uses GKD's three MSE objectives on the same masked/unmasked views, but with plain
LayerNorm+Linear heads (no QSD) and the patch loss scored at the *masked* positions only. Stage 2
fine-tunes the whole student (backbone and decoder) on source labels.
"""
from __future__ import annotations

from dataclasses import dataclass

from gkd.methods.base import register_method
from gkd.methods.gkd import GKD, Stage1


@dataclass(frozen=True)
class ProteusOptions:
    mask_ratio: float = 0.5
    lambda_token: float = 1.0
    lambda_fea: float = 1.0
    lambda_patch: float = 1.0


@register_method
class Proteus(GKD):
    name = "proteus"
    display = "+Proteus"
    Options = ProteusOptions

    def stage1_module(self, student, teacher_dim):
        o = self.options
        module = Stage1(student, teacher_dim, qsd=False,
                        weights={"token": o.lambda_token, "fea": o.lambda_fea, "patch": o.lambda_patch})
        module.patch_loss_masked_only = True
        return module

    @property
    def mask_ratio(self) -> float:
        return self.options.mask_ratio

    def frozen_backbone(self) -> bool:
        return False
