"""Segmentation decoders over a ViT's multi-level token-grid features, chosen by name.

``linear``: BatchNorm + 1×1 classifier on the last level (the classic linear probe).
``mlp``: SegFormer-like light head — per-level BatchNorm + 1×1 projection, concatenation, a fusing
1×1 conv, then a classifier. Both output logits on the token grid; ``Segmenter.predict`` upsamples.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

DECODERS: dict[str, type[nn.Module]] = {}


def register_decoder(cls):
    DECODERS[cls.name] = cls
    return cls


@register_decoder
class LinearDecoder(nn.Module):
    name = "linear"

    def __init__(self, in_dim: int, num_levels: int, num_classes: int, dim: int):
        super().__init__()
        self.norm = nn.BatchNorm2d(in_dim)
        self.classify = nn.Conv2d(in_dim, num_classes, 1)

    def forward(self, levels: list[torch.Tensor]) -> torch.Tensor:
        return self.classify(self.norm(levels[-1]))


@register_decoder
class MLPDecoder(nn.Module):
    name = "mlp"

    def __init__(self, in_dim: int, num_levels: int, num_classes: int, dim: int):
        super().__init__()
        self.project = nn.ModuleList(
            nn.Sequential(nn.BatchNorm2d(in_dim), nn.Conv2d(in_dim, dim, 1)) for _ in range(num_levels))
        self.fuse = nn.Sequential(nn.Conv2d(dim * num_levels, dim, 1, bias=False), nn.BatchNorm2d(dim), nn.ReLU())
        self.classify = nn.Conv2d(dim, num_classes, 1)

    def forward(self, levels: list[torch.Tensor]) -> torch.Tensor:
        x = torch.cat([p(f) for p, f in zip(self.project, levels)], dim=1)
        return self.classify(self.fuse(x))


def build_decoder(name: str, in_dim: int, num_levels: int, num_classes: int, dim: int) -> nn.Module:
    from gkd.config import choose
    return DECODERS[choose("decoder", name, DECODERS)](in_dim, num_levels, num_classes, dim)


class Segmenter(nn.Module):
    """Backbone + decoder. ``forward`` gives token-grid logits; ``predict`` full-resolution ones."""

    def __init__(self, backbone: nn.Module, decoder: nn.Module):
        super().__init__()
        self.backbone = backbone
        self.decoder = decoder

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.decoder(self.backbone(images))

    def predict(self, images: torch.Tensor) -> torch.Tensor:
        logits = self(images)
        return F.interpolate(logits, size=images.shape[-2:], mode="bilinear", align_corners=False)
