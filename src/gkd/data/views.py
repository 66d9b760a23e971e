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
"""
from __future__ import annotations

import numpy as np
import torch

from gkd.config import ViewsConfig


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
