"""Segmentation decoders over a ViT's multi-level token-grid features, chosen by name.

``linear``: BatchNorm + 1×1 classifier on the last level (the classic linear probe).
``mlp``: SegFormer-like light head — per-level BatchNorm + 1×1 projection, concatenation, a fusing
1×1 conv, then a classifier. Both output logits on the token grid; ``Segmenter.predict`` upsamples.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from gkd.registry import Registry

DECODERS = Registry("decoder")
register_decoder = DECODERS.register


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
    return DECODERS.lookup(name)(in_dim, num_levels, num_classes, dim)


class Segmenter(nn.Module):
    """Backbone + decoder. ``forward`` gives token-grid logits; ``predict`` full-resolution ones."""

    def __init__(self, backbone: nn.Module, decoder: nn.Module):
        super().__init__()
        self.backbone = backbone
        self.decoder = decoder

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.decoder(self.backbone(images))

    @property
    def input_size(self) -> int:
        vit = self.backbone.vit
        return self.backbone.grid[0] * vit.patch_embed.patch_size[0]

    def predict(self, images: torch.Tensor) -> torch.Tensor:
        """Full-resolution logits; images larger than the model's input go through sliding windows."""
        size = self.input_size
        if tuple(images.shape[-2:]) == (size, size):
            logits = self(images)
            return F.interpolate(logits, size=images.shape[-2:], mode="bilinear", align_corners=False)
        return self.predict_slide(images, size, stride=max(1, (2 * size) // 3))

    def predict_slide(self, images: torch.Tensor, window: int, stride: int) -> torch.Tensor:
        """Sliding-window inference (the paper's protocol: window 512, stride 341 ≈ 2/3), overlaps averaged."""
        b, _, h, w = images.shape
        pad_h, pad_w = max(0, window - h), max(0, window - w)
        x = F.pad(images, (0, pad_w, 0, pad_h)) if pad_h or pad_w else images
        hh, ww = x.shape[-2:]
        ys = list(range(0, hh - window + 1, stride))
        xs = list(range(0, ww - window + 1, stride))
        if ys[-1] != hh - window:
            ys.append(hh - window)
        if xs[-1] != ww - window:
            xs.append(ww - window)
        total, count = None, torch.zeros(1, 1, hh, ww, device=x.device)
        for y0 in ys:
            for x0 in xs:
                crop = x[..., y0:y0 + window, x0:x0 + window]
                logits = F.interpolate(self(crop), size=(window, window), mode="bilinear", align_corners=False)
                if total is None:
                    total = torch.zeros(b, logits.shape[1], hh, ww, device=x.device, dtype=logits.dtype)
                total[..., y0:y0 + window, x0:x0 + window] += logits
                count[..., y0:y0 + window, x0:x0 + window] += 1
        return (total / count)[..., :h, :w]
