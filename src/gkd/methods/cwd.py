"""CWD — channel-wise distillation (Shu et al., ICCV 2021) on the segmentation logits.

For every class channel, a softmax over the h·w positions (temperature τ) turns the map into a
spatial distribution; the loss is KL(p_T ‖ p_S) summed over positions, averaged over B·C, times τ².
Our choice among the published defaults: CIRKD's τ=4, λ=3 on logits (the feature term is not used).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from gkd.methods.base import Method, register_method


@dataclass(frozen=True)
class CWDOptions:
    tau: float = 4.0
    weight: float = 3.0


def channel_kl(student_maps: torch.Tensor, teacher_maps: torch.Tensor, tau: float) -> torch.Tensor:
    """τ²·mean over (B, C) of Σ_positions KL between per-channel spatial softmaxes; inputs B×C×h×w."""
    t = F.log_softmax(teacher_maps.detach().flatten(2) / tau, dim=-1)
    s = F.log_softmax(student_maps.flatten(2) / tau, dim=-1)
    return tau ** 2 * (t.exp() * (t - s)).sum(-1).mean()


@register_method
class CWD(Method):
    name = "cwd"
    display = "+CWD"
    Options = CWDOptions
    teacher_inputs = ("logits",)

    def task_terms(self, task, *, logits, teacher, **_) -> dict:
        return {"cwd": channel_kl(logits, teacher.logits, self.options.tau)}

    def task_weights(self) -> dict[str, float]:
        return {"cwd": self.options.weight}
