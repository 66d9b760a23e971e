"""The label-free stage-1 objective GKD and Proteus share: three MSE terms after student-side heads.

With T_tok = [t_c; T] the teacher's final-LN CLS and patch tokens, S_u / S_m the student's tokens of the
unmasked / masked view:

    L_token = MSE(φ_tok(s_c), t_c)
    L_fea   = MSE([φ_tok(s_c); φ_fea(S_u, T)], [t_c; T])            (unmasked view)
    L_patch = MSE(φ_patch(S_m, T), T)                                (masked view; all positions, or the
                                                                     masked ones only)
    L = λ_token·L_token + λ_fea·L_fea + λ_patch·L_patch

The methods differ in the heads (GKD: QSD heads, ``gkd.methods.heads.QSDHead``; Proteus: LayerNorm+Linear)
and in where the patch term is scored; each method's module says which, neither reaches into the other.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from gkd.config import ConfigError
from gkd.methods.heads import LinearHead, QSDHead
from gkd.methods.losses import mse, weighted_sum


@dataclass(frozen=True)
class RepresentationOptions:
    """The knobs every three-term stage-1 method has (a method's Options extend these)."""
    mask_ratio: float = 0.5
    lambda_token: float = 1.0
    lambda_fea: float = 1.0
    lambda_patch: float = 1.0

    def __post_init__(self):
        if not 0.0 <= self.mask_ratio < 1.0:
            raise ConfigError(f"mask_ratio must be in [0, 1), got {self.mask_ratio}")

    @property
    def weights(self) -> dict[str, float]:
        return {"token": self.lambda_token, "fea": self.lambda_fea, "patch": self.lambda_patch}


class RepresentationDistiller(nn.Module):
    """Student backbone + distillation heads; forward returns the loss terms of one batch.

    Where the masked view equals the unmasked one (the second half of the batch), the student is run once
    and the result reused: the same numbers, a quarter fewer student passes.
    """

    def __init__(self, student: nn.Module, teacher_dim: int, qsd: bool, weights: dict[str, float],
                 qsd_temperature: float = 1.0, patch_loss_masked_only: bool = False,
                 qsd_query_init: str = "random"):
        super().__init__()
        self.student = student
        self.token_head = LinearHead(student.embed_dim, teacher_dim)
        if qsd:
            self.fea_head = QSDHead(student.embed_dim, teacher_dim, qsd_temperature, qsd_query_init)
            self.patch_head = QSDHead(student.embed_dim, teacher_dim, qsd_temperature, qsd_query_init)
        else:
            self.fea_head = LinearHead(student.embed_dim, teacher_dim)
            self.patch_head = LinearHead(student.embed_dim, teacher_dim)
        self.weights = weights
        self.patch_loss_masked_only = patch_loss_masked_only  # Proteus: masked positions only; GKD: all

    def student_views(self, images: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(unmasked tokens, masked-view tokens), running the student once per distinct view."""
        masked_rows = mask.any(dim=1).nonzero().flatten()
        both = torch.cat([images, images[masked_rows]])
        both_mask = torch.cat([torch.zeros_like(mask), mask[masked_rows]])
        tokens, _ = self.student.forward_tokens(both, mask=both_mask, with_levels=False)
        unmasked = tokens[: len(images)]
        masked = unmasked.index_copy(0, masked_rows, tokens[len(images):])
        return unmasked, masked

    def predictions(self, images: torch.Tensor, teacher_tokens: torch.Tensor, mask: torch.Tensor
                    ) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
        """Each term's (student prediction, teacher target): the training loss and the fidelity report
        (``gkd.fidelity``) are computed from the same pairs."""
        teacher_tokens = teacher_tokens.detach()  # keys and targets: the teacher is a constant
        s_u, s_m = self.student_views(images, mask)
        t_cls, t_patch = teacher_tokens[:, 0], teacher_tokens[:, 1:]
        cls = self.token_head(s_u[:, 0])
        fea = self.fea_head(s_u[:, 1:], t_patch)
        patch = self.patch_head(s_m[:, 1:], t_patch)
        masked_only = self.patch_loss_masked_only and mask.any()
        return {"token": (cls, t_cls),
                "fea": (torch.cat([cls[:, None], fea], dim=1), teacher_tokens),
                "patch": (patch[mask], t_patch[mask]) if masked_only else (patch, t_patch)}

    def forward(self, images: torch.Tensor, teacher_tokens: torch.Tensor, mask: torch.Tensor) -> dict:
        terms = {name: mse(pred, target) for name, (pred, target) in
                 self.predictions(images, teacher_tokens, mask).items()}
        terms["loss"] = weighted_sum(terms, self.weights)
        return terms
