"""Task training of a segmenter on source labels: CE plus whatever the method adds (KD terms).

Used by every method's ``adapt`` stage: GKD (frozen backbone, decoder only), Student-only and the
KD baselines (end to end), and by ``teacher_task`` through the same decoder code.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from gkd.data.prepared import IGNORE


def cross_entropy(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """CE on labels at full resolution; token-grid logits are upsampled bilinearly first."""
    up = F.interpolate(logits, size=labels.shape[-2:], mode="bilinear", align_corners=False)
    return F.cross_entropy(up, labels, ignore_index=IGNORE)


class SegTask(nn.Module):
    """segmenter + the method's extra modules; ``forward`` returns named loss terms."""

    def __init__(self, segmenter: nn.Module, method, frozen_backbone: bool, extra: nn.Module | None = None):
        super().__init__()
        self.segmenter = segmenter
        self.method = method
        self.frozen = frozen_backbone
        self.extra = extra
        if frozen_backbone:
            segmenter.backbone.requires_grad_(False)

    def train(self, mode: bool = True):
        super().train(mode)
        if self.frozen:  # eval-mode norms for the frozen backbone
            self.segmenter.backbone.eval()
        return self

    def forward(self, images: torch.Tensor, labels: torch.Tensor, teacher: dict | None = None):
        backbone = self.segmenter.backbone
        if self.frozen:
            with torch.no_grad():
                tokens, levels = backbone.forward_tokens(images)
        else:
            tokens, levels = backbone.forward_tokens(images)
        logits = self.segmenter.decoder(levels)
        terms = {"ce": cross_entropy(logits, labels)}
        terms.update(self.method.task_terms(self, logits=logits, levels=levels, tokens=tokens, labels=labels,
                                            teacher=teacher or {}))
        terms["loss"] = terms["ce"] + sum(v for k, v in terms.items() if k.startswith("w_"))
        return terms
