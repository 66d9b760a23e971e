"""GKD (Lv et al., CVPR 2026): decoupled, query-based soft distillation of a VFM's representation.

Stage 1 (no labels): the student sees each image unmasked and — for the first half of the batch — with
⌊ratio·N⌋ random patch embeddings replaced by its mask token. Three heads map student tokens to the
teacher's space; with T_tok = [t_c; T] the teacher's final-LN CLS and patch tokens:

    L_token = MSE(φ_tok(s_c), t_c)
    L_fea   = MSE([φ_tok(s_c); QSD_fea(S_u, T)], [t_c; T])         (unmasked view)
    L_patch = MSE(QSD_patch(S_m, T), T)                             (masked view, all positions)
    L = λ_token·L_token + λ_fea·L_fea + λ_patch·L_patch

QSD(S, T) = softmax(φ_q(S)·Tᵀ)·φ_v(S) (see heads.QSDHead). For the CLS token the key set is the single
teacher CLS, so its QSD reduces to φ_v: a LayerNorm+Linear head. Stage 2 freezes the backbone and
trains only the decoder on source labels.

Where the masked view equals the unmasked one (the second half of the batch), the student is run once
and the result reused: the same numbers, a quarter fewer student passes.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from gkd.config import ConfigError, choose
from gkd.methods.base import Method, register_method
from gkd.methods.heads import LinearHead, QSDHead
from gkd.methods.losses import mse, weighted_sum


@dataclass(frozen=True)
class GKDOptions:
    qsd: bool = True            # False: plain LayerNorm+Linear heads (ablation)
    qsd_temperature: float = 1.0  # divides the QSD attention logits (1: the paper, no scaling)
    mask: bool = True           # False: the "masked" view is the unmasked one (ablation)
    mask_ratio: float = 0.5
    lambda_token: float = 1.0
    lambda_fea: float = 1.0
    lambda_patch: float = 1.0
    stage2: str = "frozen"      # frozen | finetune (ablation)

    def __post_init__(self):
        choose("stage2 mode (method_configs.*.stage2)", self.stage2, ("frozen", "finetune"))
        if not 0.0 <= self.mask_ratio < 1.0:
            raise ConfigError(f"mask_ratio must be in [0, 1), got {self.mask_ratio}")
        if not self.qsd_temperature > 0:
            raise ConfigError(f"qsd_temperature must be > 0, got {self.qsd_temperature}")


class Stage1(nn.Module):
    """Student backbone + distillation heads; forward returns the loss terms of one batch."""

    patch_loss_masked_only = False  # Proteus scores masked positions only; GKD all of them

    def __init__(self, student: nn.Module, teacher_dim: int, qsd: bool, weights: dict[str, float],
                 qsd_temperature: float = 1.0):
        super().__init__()
        self.student = student
        self.token_head = LinearHead(student.embed_dim, teacher_dim)
        if qsd:
            self.fea_head = QSDHead(student.embed_dim, teacher_dim, qsd_temperature)
            self.patch_head = QSDHead(student.embed_dim, teacher_dim, qsd_temperature)
        else:
            self.fea_head = LinearHead(student.embed_dim, teacher_dim)
            self.patch_head = LinearHead(student.embed_dim, teacher_dim)
        self.weights = weights

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


@register_method
class GKD(Method):
    name = "gkd"
    display = "+GKD"
    Options = GKDOptions
    stage1 = True

    def stage1_module(self, student: nn.Module, teacher_dim: int) -> Stage1:
        o = self.options
        if not o.mask and student.mask_token is not None:
            student.mask_token.requires_grad_(False)
        return Stage1(student, teacher_dim, o.qsd, {"token": o.lambda_token, "fea": o.lambda_fea, "patch": o.lambda_patch},
                      o.qsd_temperature)

    @property
    def mask_ratio(self) -> float:
        return self.options.mask_ratio if self.options.mask else 0.0

    def frozen_backbone(self) -> bool:
        return self.options.stage2 == "frozen"
