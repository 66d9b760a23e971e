"""ViTKD (Yang et al., arXiv 2209.02432): mimic shallow tokens, generate deep ones.

* Mimicking: the student's patch tokens after blocks 1 and 2, each through its own Linear to the
  teacher's width, regress the teacher's tokens of the same blocks: ``L_low = α·Σ(Lin(S_l) − T_l)²/B``.
* Generation: the student's last patch tokens go through a Linear, 50 % of positions are replaced by a
  learnable mask token, a generator (conv3×3–ReLU–conv3×3 on the token grid) predicts the teacher's
  last tokens, scored at masked positions: ``L_gen = (β/0.5)·Σ_masked(G − T_last)²/B``.
Defaults α=3e-5, β=3e-6, mask 0.5. Choice of ours: T_last is the teacher's final-LayerNorm patch tokens
(the tokens cached for GKD). One-stage task training with CE, like the other KD baselines.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from gkd.methods.base import Method, register_method


@dataclass(frozen=True)
class ViTKDOptions:
    alpha: float = 3e-5
    beta: float = 3e-6
    mask_ratio: float = 0.5


class ViTKDModules(nn.Module):
    def __init__(self, student_dim: int, teacher_dim: int, grid: tuple[int, int]):
        super().__init__()
        self.mimic = nn.ModuleList(nn.Linear(student_dim, teacher_dim) for _ in range(2))
        self.to_teacher = nn.Linear(student_dim, teacher_dim)
        self.mask_token = nn.Parameter(torch.zeros(1, 1, teacher_dim))
        self.generate = nn.Sequential(nn.Conv2d(teacher_dim, teacher_dim, 3, padding=1), nn.ReLU(),
                                      nn.Conv2d(teacher_dim, teacher_dim, 3, padding=1))
        self.grid = grid


@register_method
class ViTKD(Method):
    name = "vitkd"
    display = "+ViTKD"
    Options = ViTKDOptions
    teacher_inputs = ("tokens", "shallow")
    student_taps = (0, 1)  # the student's block-1 and block-2 outputs are needed

    def task_module(self, *, student_dim: int, teacher_shapes: dict, grid, **_) -> nn.Module:
        return ViTKDModules(student_dim, teacher_shapes["tokens"][-1], grid)

    def task_terms(self, task, *, tokens, taps, teacher, **_) -> dict:
        m, o = task.extra, self.options
        b = tokens.shape[0]
        shallow = teacher.shallow  # B×2×N×D
        low = sum((lin(s) - shallow[:, i]).pow(2).sum() for i, (lin, s) in enumerate(zip(m.mimic, taps))) / b
        deep = m.to_teacher(tokens[:, 1:])  # B×N×D
        n = deep.shape[1]
        mask = torch.rand(b, n, device=deep.device).argsort(dim=1) < int(o.mask_ratio * n)
        deep = torch.where(mask[..., None], m.mask_token.to(deep.dtype), deep)
        grid = deep.transpose(1, 2).reshape(b, -1, *m.grid)
        generated = m.generate(grid).flatten(2).transpose(1, 2)  # B×N×D
        target = teacher.tokens[:, 1:]  # TeacherBatch fields are detached
        gen = (generated - target).pow(2)[mask].sum() / b
        return {"low": low, "gen": gen}

    def task_weights(self) -> dict[str, float]:
        o = self.options
        return {"low": o.alpha, "gen": o.beta / o.mask_ratio}
