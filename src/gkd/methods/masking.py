"""Random patch masking of the student's second view (GKD / Proteus stage 1)."""
from __future__ import annotations

import numpy as np
import torch


def first_half_mask(rngs: list[np.random.Generator], num_patches: int, ratio: float) -> torch.Tensor:
    """B×N bool: the first ⌊B/2⌋ samples get ⌊ratio·N⌋ uniformly random patches hidden, the rest none.

    Deterministic by batch position (no per-sample coin flip), as the official code; the positions come
    from each sample's own generator so that they do not depend on how the batch was sharded.
    """
    b = len(rngs)
    mask = torch.zeros(b, num_patches, dtype=torch.bool)
    k = int(ratio * num_patches)
    for i in range(b // 2):
        mask[i, torch.from_numpy(rngs[i].permutation(num_patches)[:k])] = True
    return mask
