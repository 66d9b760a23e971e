"""Segmentation decoders over a ViT's multi-level token-grid features, chosen by name.

``linear``: BatchNorm + 1×1 classifier on the last level (the classic linear probe).
``mlp``: SegFormer-like light head — per-level BatchNorm + 1×1 projection, concatenation, a fusing
1×1 conv, then a classifier. Both output logits on the token grid; ``Segmenter.predict`` upsamples.

Inference follows the paper's test protocol (mmseg ``test_cfg=dict(mode="slide", crop_size=512,
stride=341)``): an image of exactly the model's input size is predicted whole; any other image goes
through square windows of the input size (the crop) placed every ``slide_stride`` = round(2/3 of the
crop) pixels — 341 for 512, 683 for 1024 — the last window of each axis flush with the image's end
(``window_starts``), an image smaller than a window zero-padded at its bottom/right. Each window's
logits are upsampled to the window, overlaps averaged, and, given ``size`` (the original label's),
the image-resolution logits are resized bilinearly to it before any argmax.
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

    def predict(self, images: torch.Tensor, size: tuple[int, int] | None = None) -> torch.Tensor:
        """Logits at the images' resolution, or at ``size`` (H, W) — e.g. the original label's, which
        the paper's protocol never resizes. An image of the model's input size is predicted whole, any
        other through sliding windows."""
        crop = self.input_size
        if tuple(images.shape[-2:]) == (crop, crop):
            logits = F.interpolate(self(images), size=images.shape[-2:], mode="bilinear", align_corners=False)
        else:
            logits = self.predict_slide(images, crop, stride=slide_stride(crop))
        return logits if size is None else logits_at(logits, size)

    def predict_slide(self, images: torch.Tensor, window: int, stride: int) -> torch.Tensor:
        """Sliding-window inference (the paper's protocol: window 512, stride 341), overlaps averaged."""
        b, _, h, w = images.shape
        pad_h, pad_w = max(0, window - h), max(0, window - w)
        x = F.pad(images, (0, pad_w, 0, pad_h)) if pad_h or pad_w else images
        hh, ww = x.shape[-2:]
        total, count = None, torch.zeros(1, 1, hh, ww, device=x.device)
        for y0 in window_starts(hh, window, stride):
            for x0 in window_starts(ww, window, stride):
                crop = x[..., y0:y0 + window, x0:x0 + window]
                logits = F.interpolate(self(crop), size=(window, window), mode="bilinear", align_corners=False)
                if total is None:
                    total = torch.zeros(b, logits.shape[1], hh, ww, device=x.device, dtype=logits.dtype)
                total[..., y0:y0 + window, x0:x0 + window] += logits
                count[..., y0:y0 + window, x0:x0 + window] += 1
        return (total / count)[..., :h, :w]


def logits_at(logits: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """(…)×K×h×w logits resized bilinearly to ``size`` (H, W) — unchanged if already that size."""
    size = tuple(int(v) for v in size)
    if tuple(logits.shape[-2:]) == size:
        return logits
    squeeze = logits.dim() == 3
    out = F.interpolate(logits[None] if squeeze else logits, size=size, mode="bilinear", align_corners=False)
    return out[0] if squeeze else out


def slide_stride(window: int) -> int:
    """The paper's stride for a window: round(2/3 of it) — 341 for 512, 683 for 1024."""
    return max(1, round(2 * window / 3))


def window_starts(length: int, window: int, stride: int) -> list[int]:
    """Offsets of the windows along one axis of ``length`` >= ``window``: every ``stride`` pixels, and
    a last one flush with the end (mmseg's slide inference places the same windows)."""
    if length < window or window < 1 or stride < 1:
        raise ValueError(f"window_starts: need length >= window >= 1 and stride >= 1, got length {length}, "
                         f"window {window}, stride {stride}")
    starts = list(range(0, length - window + 1, stride))
    if starts[-1] != length - window:
        starts.append(length - window)
    return starts
