"""Student-side projection heads of stage-1 distillation (thrown away after stage 1)."""
from __future__ import annotations

import torch
from torch import nn


class LinearHead(nn.Module):
    """LayerNorm + Linear (student width → teacher width): Proteus' head and GKD's CLS head."""

    def __init__(self, student_dim: int, teacher_dim: int):
        super().__init__()
        self.proj = nn.Sequential(nn.LayerNorm(student_dim), nn.Linear(student_dim, teacher_dim))

    def forward(self, student: torch.Tensor, teacher: torch.Tensor | None = None) -> torch.Tensor:
        return self.proj(student)


class QSDHead(nn.Module):
    """Query-based soft distillation: ``softmax(φ_q(S) · Tᵀ) · φ_v(S)``.

    Student tokens are the queries, the (raw) teacher tokens the keys, projected student tokens the
    values; the softmax runs over the teacher's token positions. One head, no 1/√d scaling, no key
    projection — as in the paper. Each output token is thus a soft mixture of the student's own
    projected tokens, routed by where the teacher says that token's content lives. ``temperature`` divides
    the logits (1: the paper; √D_t: a transformer's usual scaling, a softer routing).

    ``query_init="zero"`` starts the query projection at zero, so every run starts from the same (uniform)
    routing and learns it from the data; with raw teacher keys a random query starts near one-hot. Measured
    on the embedded benchmark it does not steady the result over seeds (docs/results.md, 'Levers').
    """

    def __init__(self, student_dim: int, teacher_dim: int, temperature: float = 1.0, query_init: str = "random"):
        super().__init__()
        self.temperature = temperature
        self.query = nn.Sequential(nn.LayerNorm(student_dim), nn.Linear(student_dim, teacher_dim))
        self.value = nn.Sequential(nn.LayerNorm(student_dim), nn.Linear(student_dim, teacher_dim))
        if query_init == "zero":
            nn.init.zeros_(self.query[1].weight)
            nn.init.zeros_(self.query[1].bias)
        elif query_init != "random":
            raise ValueError(f"query_init must be 'random' or 'zero', got {query_init!r}")

    def attention(self, student: torch.Tensor, teacher: torch.Tensor) -> torch.Tensor:
        """B×N_s×N_t row-stochastic routing weights."""
        logits = self.query(student) @ teacher.transpose(1, 2)
        return torch.softmax(logits if self.temperature == 1.0 else logits / self.temperature, dim=-1)

    def forward(self, student: torch.Tensor, teacher: torch.Tensor) -> torch.Tensor:
        if student.shape[1] != teacher.shape[1]:
            raise ValueError(f"QSD needs equal token grids; student has {student.shape[1]} tokens, "
                             f"teacher {teacher.shape[1]}")
        return self.attention(student, teacher) @ self.value(student)
