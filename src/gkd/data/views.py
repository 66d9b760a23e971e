"""The augmented views of a training image that teacher and student both see.

The official GKD code runs the frozen teacher on exactly the crop the student gets. With a cached
teacher that means caching the teacher once per *view*, never deriving one view's target from
another's: DINOv2-S's tokens of a mirrored image differ from its mirrored token grid by about 62 % of
the token variance (measured on the synthetic benchmark), so a flipped grid is not the flipped view's
target.

Every training image has ``count(views)`` views, numbered ``0..V-1``:

* view ``v`` is mirrored when ``hflip`` and ``v`` is odd (views alternate plain / mirrored);
* view ``v`` is photometrically jittered when ``v // orientations >= 1``: brightness, contrast and
  saturation factors drawn uniformly from ``[1 - jitter, 1 + jitter]`` by a generator seeded with
  ``(seed, image index, v)`` — so a view is a pure function of (image, index, view number, seed).

``teacher_features`` caches the teacher on every view; each training step picks one view per sample
(seeded by run seed, epoch and sample) and renders it for the student with the same function.

**Online mode** (``teacher_features.mode: online``): no fixed views. Each stage-1 step draws one
augmentation per sample (``draw``) from the sample's own generator, seeded by (run seed, epoch, sample),
and renders it once (``augment``); the frozen teacher and the student both get that tensor. The recipe
is the official stage-1 code's DeiT-style one (``teacher_features.augment``), written here from its
description:

1. random resized crop — area fraction in ``crop_scale``, aspect ratio log-uniform in ``crop_ratio``
   (10 tries, then the largest centred crop within the ratio range), resized to ``image_size`` (bicubic);
2. horizontal flip with probability ``hflip``;
3. RandAugment "rand-m9-mstd0.5-inc1": ``randaug_ops`` operations drawn with replacement from ``OPS``,
   each applied with probability 0.5 at strength m ~ N(``randaug_magnitude``, ``randaug_magnitude_std``)
   clipped to [0, 10]; "increasing" variants (a higher m is always a stronger change; signed operations
   take a random direction);
4. random erasing with probability ``erasing``: one rectangle of 2–33 % of the area, aspect ratio
   log-uniform in [0.3, 3.3], filled with per-pixel noise N(0, 1) *after ImageNet normalisation* (the
   noise is drawn in pixel space, mean + std·z, because the one view feeds two models).

Choices of ours: geometric operations interpolate bilinearly and fill with the ImageNet mean colour;
posterize keeps at least 1 bit (0 bits would blank the image); shears are about the image centre. The
official code's repeated-augmentation sampler (several augmented copies of an image in one global
batch) is a sampler, not a view, and is not reproduced.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
import torchvision.transforms.v2.functional as TF

from gkd.config import AugmentConfig, ViewsConfig


def choose(rngs: list[np.random.Generator], count: int) -> torch.Tensor:
    """One view number per sample, from each sample's own generator (independent of sharding)."""
    return torch.tensor([int(r.integers(count)) for r in rngs], dtype=torch.long)


def is_mirrored(cfg: ViewsConfig, view: torch.Tensor) -> torch.Tensor:
    return (view % cfg.orientations == 1) if cfg.hflip else torch.zeros_like(view, dtype=torch.bool)


def jitter_factors(cfg: ViewsConfig, seed: int, index: int, view: int) -> np.ndarray | None:
    """(brightness, contrast, saturation) of one view, or None for an un-jittered view."""
    if view // cfg.orientations == 0:
        return None
    return np.random.default_rng([seed, int(index), int(view)]).uniform(1 - cfg.jitter, 1 + cfg.jitter, 3)


def render(images: torch.Tensor, index: torch.Tensor, view: torch.Tensor, cfg: ViewsConfig, seed: int) -> torch.Tensor:
    """uint8 B×3×H×W images → float [0, 1] views ``view`` (B) of the images numbered ``index`` (B)."""
    x = images.float() / 255.0
    mirrored = is_mirrored(cfg, view).to(x.device)
    if mirrored.any():
        x = torch.where(mirrored.view(-1, 1, 1, 1), x.flip(-1), x)
    factors = [jitter_factors(cfg, seed, i, v) for i, v in zip(index.tolist(), view.tolist())]
    rows = [k for k, f in enumerate(factors) if f is not None]
    if rows:  # only the jittered rows are touched: a plain view is the same bytes in any batch
        f = torch.tensor(np.array([factors[k] for k in rows]), dtype=x.dtype, device=x.device)
        y = x[rows] * f[:, 0].view(-1, 1, 1, 1)                                  # brightness
        mean = y.mean(dim=(1, 2, 3), keepdim=True)
        y = (y - mean) * f[:, 1].view(-1, 1, 1, 1) + mean                        # contrast
        grey = y.mean(dim=1, keepdim=True)
        x[rows] = ((y - grey) * f[:, 2].view(-1, 1, 1, 1) + grey).clamp_(0, 1)   # saturation
    return x


def render_labels(labels: torch.Tensor, view: torch.Tensor, cfg: ViewsConfig) -> torch.Tensor:
    """Labels B×H×W follow the view's geometry (mirrored with it); photometry leaves them alone."""
    mirrored = is_mirrored(cfg, view).to(labels.device)
    if not mirrored.any():
        return labels
    return torch.where(mirrored.view(-1, 1, 1), labels.flip(-1), labels)


# ---------------------------------------------------------------------------------------------- online mode
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
OP_PROBABILITY = 0.5             # RandAugment applies each drawn operation with this probability
ERASE_AREA = (0.02, 1 / 3)       # random erasing: area fraction and aspect ratio of the rectangle
ERASE_RATIO = (0.3, 1 / 0.3)
BILINEAR = TF.InterpolationMode.BILINEAR


def _factor(level: float) -> float:
    """Enhancement factor of a signed strength in [-1, 1]: 1 ± 0.9 at full strength."""
    return 1.0 + 0.9 * level


def _solarize(x: torch.Tensor, level: float) -> torch.Tensor:
    """Invert the pixels above 1 − level (stronger: more pixels)."""
    return torch.where(x > 1.0 - level, 1.0 - x, x) if level > 0 else x


def _affine(x: torch.Tensor, translate=(0.0, 0.0), shear=(0.0, 0.0)) -> torch.Tensor:
    return TF.affine(x, angle=0.0, translate=list(translate), scale=1.0, shear=list(shear), interpolation=BILINEAR,
                     fill=list(IMAGENET_MEAN))


# name -> (operation on a float C×H×W view at strength ``level``, signed?) ; |level| = magnitude / 10
OPS = {
    "auto_contrast": (lambda x, level: TF.autocontrast(x), False),
    "equalize": (lambda x, level: TF.equalize(x), False),
    "invert": (lambda x, level: TF.invert(x), False),
    "rotate": (lambda x, level: TF.rotate(x, 30.0 * level, interpolation=BILINEAR, fill=list(IMAGENET_MEAN)), True),
    "posterize": (lambda x, level: TF.posterize(x, max(1, 4 - int(4 * level))), False),
    "solarize": (_solarize, False),
    "solarize_add": (lambda x, level: torch.where(x < 0.5, (x + 110 / 255 * level).clamp(max=1.0), x), False),
    "color": (lambda x, level: TF.adjust_saturation(x, _factor(level)), True),
    "contrast": (lambda x, level: TF.adjust_contrast(x, _factor(level)), True),
    "brightness": (lambda x, level: TF.adjust_brightness(x, _factor(level)), True),
    "sharpness": (lambda x, level: TF.adjust_sharpness(x, _factor(level)), True),
    "shear_x": (lambda x, level: _affine(x, shear=(math.degrees(math.atan(0.3 * level)), 0.0)), True),
    "shear_y": (lambda x, level: _affine(x, shear=(0.0, math.degrees(math.atan(0.3 * level)))), True),
    "translate_x": (lambda x, level: _affine(x, translate=(0.45 * level * x.shape[-1], 0.0)), True),
    "translate_y": (lambda x, level: _affine(x, translate=(0.0, 0.45 * level * x.shape[-2])), True),
}


@dataclass(frozen=True)
class Augmentation:
    """One sample's stage-1 augmentation, fully drawn: ``apply`` renders it (a pure function of this and
    the image)."""
    crop: tuple[int, int, int, int]               # top, left, height, width in the source image
    flip: bool
    ops: tuple[tuple[str, float], ...]            # (operation, strength in [-1, 1]), in order
    erase: tuple[int, int, int, int] | None       # top, left, height, width in the output view
    noise_seed: int                               # the erased rectangle's noise


def _box(rng: np.random.Generator, height: int, width: int, area: tuple[float, float],
         ratio: tuple[float, float]) -> tuple[int, int, int, int] | None:
    """A rectangle of ``area`` × the image's area and aspect ratio (w/h) log-uniform in ``ratio``, placed
    uniformly; None when 10 tries do not fit."""
    for _ in range(10):
        target = height * width * rng.uniform(*area)
        aspect = math.exp(rng.uniform(math.log(ratio[0]), math.log(ratio[1])))
        w, h = int(round(math.sqrt(target * aspect))), int(round(math.sqrt(target / aspect)))
        if 0 < w <= width and 0 < h <= height:
            return int(rng.integers(0, height - h + 1)), int(rng.integers(0, width - w + 1)), h, w
    return None


def _crop_box(rng, height: int, width: int, scale, ratio) -> tuple[int, int, int, int]:
    box = _box(rng, height, width, tuple(scale), tuple(ratio))
    if box is not None:
        return box
    aspect = min(max(width / height, ratio[0]), ratio[1])  # the largest centred crop within the ratio range
    w, h = (width, int(round(width / aspect))) if width / height < aspect else (int(round(height * aspect)), height)
    w, h = min(w, width), min(h, height)
    return (height - h) // 2, (width - w) // 2, h, w


def draw(rng: np.random.Generator, cfg: AugmentConfig, height: int, width: int, size: int) -> Augmentation:
    """Every random choice of one sample's view, from its own generator (order fixed: crop, flip, ops, erase)."""
    crop = _crop_box(rng, height, width, cfg.crop_scale, cfg.crop_ratio)
    flip = bool(rng.random() < cfg.hflip)
    ops = []
    for name in rng.choice(sorted(OPS), size=cfg.randaug_ops).tolist():  # with replacement, as RandAugment
        apply_it, sign = rng.random() < OP_PROBABILITY, (-1.0 if rng.random() < 0.5 else 1.0)
        magnitude = cfg.randaug_magnitude
        if cfg.randaug_magnitude_std > 0:
            magnitude = float(np.clip(rng.normal(magnitude, cfg.randaug_magnitude_std), 0.0, 10.0))
        if apply_it:
            ops.append((name, (sign if OPS[name][1] else 1.0) * magnitude / 10.0))
    erase = _box(rng, size, size, ERASE_AREA, ERASE_RATIO) if rng.random() < cfg.erasing else None
    return Augmentation(crop, flip, tuple(ops), erase, int(rng.integers(2**31)))


def apply(image: torch.Tensor, aug: Augmentation, size: int) -> torch.Tensor:
    """Float [0, 1] C×H×W image → its augmented ``size``×``size`` view (on the image's device)."""
    top, left, h, w = aug.crop
    x = F.interpolate(image[None, :, top:top + h, left:left + w], size=(size, size), mode="bicubic",
                      align_corners=False, antialias=True)[0].clamp_(0, 1)
    if aug.flip:
        x = x.flip(-1)
    for name, level in aug.ops:
        x = OPS[name][0](x, level)
    if aug.erase is not None:
        top, left, h, w = aug.erase
        z = torch.randn(3, h, w, generator=torch.Generator().manual_seed(aug.noise_seed))
        mean, std = torch.tensor(IMAGENET_MEAN).view(3, 1, 1), torch.tensor(IMAGENET_STD).view(3, 1, 1)
        x = x.clone()
        x[:, top:top + h, left:left + w] = (mean + std * z).to(x)
    return x


def augment(images: torch.Tensor, rngs: list[np.random.Generator], cfg: AugmentConfig, size: int,
            device="cpu") -> torch.Tensor:
    """uint8 B×3×H×W images → float B×3×size×size online views, one ``draw`` per sample from ``rngs``,
    rendered on ``device`` (a GPU does the work there; the random choices are made on the CPU)."""
    height, width = images.shape[-2:]
    plans = [draw(r, cfg, height, width, size) for r in rngs]
    src = images.to(device)
    return torch.stack([apply(src[i].float() / 255.0, plan, size) for i, plan in enumerate(plans)])
