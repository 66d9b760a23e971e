"""Vanilla KD (Hinton et al., 2015) for segmentation: per-pixel logit distillation.

L = CE + λ·τ²·(1/(B·h·w)) Σ_pixels KL(σ(z_T/τ) ‖ σ(z_S/τ)), on the decoder's token-grid logits
(before upsampling). Teacher logits: the `teacher_task` model's, cached once on the source split.
Defaults τ=1, λ=1 as in the Af-DCD/CIRKD code base.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from gkd.methods.base import Method, register_method


@dataclass(frozen=True)
class KDOptions:
    tau: float = 1.0
    weight: float = 1.0


def pixel_kl(student_logits: torch.Tensor, teacher_logits: torch.Tensor, tau: float) -> torch.Tensor:
    """τ²·mean over pixels of KL(σ(z_T/τ) ‖ σ(z_S/τ)); inputs B×K×h×w."""
    t = F.log_softmax(teacher_logits.detach() / tau, dim=1)
    s = F.log_softmax(student_logits / tau, dim=1)
    kl = (t.exp() * (t - s)).sum(dim=1)  # B×h×w
    return tau ** 2 * kl.mean()


@register_method
class VanillaKD(Method):
    name = "vanilla_kd"
    display = "+Vanilla KD"
    Options = KDOptions
    teacher_inputs = ("logits",)

    def task_terms(self, task, *, logits, teacher, **_) -> dict:
        return {"kd": pixel_kl(logits, teacher.logits, self.options.tau)}

    def task_weights(self) -> dict[str, float]:
        return {"kd": self.options.weight}
