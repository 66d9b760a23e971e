"""Loss helpers shared by several methods (one place, not copied into each method)."""
from __future__ import annotations

import torch
import torch.nn.functional as F


def mse(student: torch.Tensor, teacher: torch.Tensor) -> torch.Tensor:
    """Element-mean squared error; the teacher side never carries gradient."""
    return F.mse_loss(student, teacher.detach())


def weighted_sum(terms: dict[str, torch.Tensor], weights: dict[str, float]) -> torch.Tensor:
    """Σ λ_k·term_k over the weighted terms (a zero weight keeps the term for logging only)."""
    return sum(weights[k] * terms[k] for k in weights)
