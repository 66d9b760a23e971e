"""Af-DCD — augmentation-free dense contrastive distillation (Fan et al., NeurIPS 2023).

Student side: the last backbone feature map is aligned to the teacher's width by a 1×1 conv, a random
spatial zero-mask (p=0.75, shared over channels) hides most positions, and a projector
(conv3×3–ReLU–conv3×3) regenerates F̂. Two terms against the teacher's last feature map F_T:
* feature distillation ``L_fd = Σ(F̂ − F_T)² / B``;
* omni-contrastive ``L_ctr``: channels split into M groups; inside each spatial patch, the student
  vector of (position, group) must be closer (similarity = −mean |·| distance, temperature τ) to the
  teacher vector of the same (position, group) than to teacher vectors of other groups anywhere in the
  patch; InfoNCE summed over groups, averaged over positions and batch.
Plus logit KD (λ=1). Defaults λ_fd=2e-6, λ_ctr=5e-3 (Cityscapes). Choices of ours, for small token
grids: no max-pooling and 2×2 spatial patches (the paper pools by 4 and uses 4×4 patches on 64×128
maps); the L1 distance is a per-dimension mean so that τ=0.07 keeps a usable scale.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from gkd.methods.base import Method, register_method
from gkd.methods.vanilla_kd import pixel_kl


@dataclass(frozen=True)
class AfDCDOptions:
    mask_prob: float = 0.75
    groups: int = 16
    patch: int = 2
    tau: float = 0.07
    lambda_fd: float = 2e-6
    lambda_ctr: float = 5e-3
    lambda_kd: float = 1.0


class AfDCDModules(nn.Module):
    def __init__(self, student_dim: int, teacher_dim: int, mask_prob: float):
        super().__init__()
        self.align = nn.Conv2d(student_dim, teacher_dim, 1)
        self.project = nn.Sequential(nn.Conv2d(teacher_dim, teacher_dim, 3, padding=1), nn.ReLU(),
                                     nn.Conv2d(teacher_dim, teacher_dim, 3, padding=1))
        self.mask_prob = mask_prob

    def forward(self, student: torch.Tensor) -> torch.Tensor:
        x = self.align(student)
        if self.training:
            keep = (torch.rand(x.shape[0], 1, *x.shape[-2:], device=x.device) >= self.mask_prob).to(x.dtype)
            x = x * keep
        return self.project(x)


def omni_contrastive(student: torch.Tensor, teacher: torch.Tensor, groups: int, patch: int, tau: float) -> torch.Tensor:
    """InfoNCE over (position, channel-group) pairs inside p×p spatial patches; inputs B×C×h×w."""
    b, c, h, w = student.shape
    if c % groups or h % patch or w % patch:
        raise ValueError(f"Af-DCD: {c} channels / {groups} groups or grid {h}×{w} / patch {patch} do not divide")

    def units(x):  # B×C×h×w → (B·patches)×(p·p·M)×(C/M)
        x = x.reshape(b, groups, c // groups, h // patch, patch, w // patch, patch)
        x = x.permute(0, 3, 5, 4, 6, 1, 2)  # B, ph, pw, p, p, M, C/M
        return x.reshape(b * (h // patch) * (w // patch), patch * patch * groups, c // groups)

    s, t = units(student), units(teacher.detach())
    sim = -torch.cdist(s, t, p=1) / (s.shape[-1] * tau)  # −mean |s − t| / τ, anchors × candidates
    n = s.shape[1]
    group_of = torch.arange(n, device=s.device) % groups
    same_group_elsewhere = (group_of[:, None] == group_of[None, :]) & ~torch.eye(n, dtype=torch.bool, device=s.device)
    sim = sim.masked_fill(same_group_elsewhere, float("-inf"))  # candidates: the positive + other groups
    loss = -torch.diagonal(torch.log_softmax(sim, dim=-1), dim1=-2, dim2=-1)  # (B·patches) × (p·p·M)
    # sum over groups, mean over positions and batch
    return loss.reshape(-1, patch * patch, groups).sum(-1).mean()


@register_method
class AfDCD(Method):
    name = "afdcd"
    display = "+Af-DCD"
    Options = AfDCDOptions
    teacher_inputs = ("logits", "last")

    def task_module(self, *, student_dim: int, teacher_shapes: dict, **_) -> nn.Module:
        return AfDCDModules(student_dim, teacher_shapes["last"][0], self.options.mask_prob)

    def task_terms(self, task, *, logits, levels, teacher, **_) -> dict:
        o = self.options
        t_last = teacher.last
        generated = task.extra(levels[-1])
        return {"fd": (generated - t_last).pow(2).sum() / len(t_last),
                "ctr": omni_contrastive(generated, t_last, o.groups, o.patch, o.tau),
                "kd": pixel_kl(logits, teacher.logits, 1.0)}

    def task_weights(self) -> dict[str, float]:
        o = self.options
        return {"fd": o.lambda_fd, "ctr": o.lambda_ctr, "kd": o.lambda_kd}
