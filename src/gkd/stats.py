"""Statistics over seeds and images: mean ± std per column, and paired bootstrap intervals of differences.

A difference between two methods on the embedded benchmark has two sources of noise: the run (seed:
data order, views, masks, head and decoder init) and the finite target splits (which images happen to
be in them). ``paired_bootstrap`` resamples both at once — seeds with replacement, and images with
replacement within each target domain, the same draw for both methods (paired) — and recomputes each
method's seed-averaged Avg mIoU from per-image pixel counts (``evaluate --per-image``).
"""
from __future__ import annotations

import numpy as np


def miou_from_counts(counts: np.ndarray) -> np.ndarray:
    """counts …×3×K (true positives, ground-truth pixels, predicted pixels per class) → mIoU % (…),
    over the classes present in prediction or ground truth (the whole-split confusion-matrix mIoU)."""
    tp, gt, pred = counts[..., 0, :], counts[..., 1, :], counts[..., 2, :]
    union = gt + pred - tp
    with np.errstate(invalid="ignore", divide="ignore"):
        iou = np.where(union > 0, tp / np.where(union > 0, union, 1), np.nan)
    return 100 * np.nanmean(iou, axis=-1)


def paired_bootstrap(per_image: dict[str, list[dict[str, np.ndarray]]], reference: str, domains: list[str],
                     samples: int = 2000, seed: int = 0) -> dict[str, tuple[float, float]]:
    """95 % interval of (method Avg − reference Avg), both averaged over seeds, for every method.

    ``per_image[method][s][domain]``: n×3×K per-image counts of seed ``s`` (a method with fewer seeds
    than the reference, such as the shared teacher, reuses its own runs cyclically).
    """
    rng = np.random.default_rng(seed)
    n_seeds = max(len(runs) for runs in per_image.values())
    seed_draw = rng.integers(0, n_seeds, size=(samples, n_seeds))
    image_draw = {}
    for d in domains:
        n = len(per_image[reference][0][d])
        image_draw[d] = np.stack([np.bincount(rng.integers(0, n, n), minlength=n) for _ in range(samples)])  # B×n
    avg = {}
    for method, seed_runs in per_image.items():
        per_seed = []
        for s in range(n_seeds):
            counts = seed_runs[s % len(seed_runs)]
            mious = [miou_from_counts((image_draw[d] @ counts[d].reshape(len(counts[d]), -1))
                                      .reshape(samples, *counts[d].shape[1:])) for d in domains]
            per_seed.append(np.mean(mious, axis=0))                      # B
        per_seed = np.stack(per_seed, axis=1)                            # B×S
        avg[method] = np.take_along_axis(per_seed, seed_draw, axis=1).mean(axis=1)
    return {m: tuple(np.percentile(avg[m] - avg[reference], [2.5, 97.5]).round(2).tolist())
            for m in per_image if m != reference}


def image_bootstrap(counts: dict[str, np.ndarray], domains: list[str], samples: int = 2000, seed: int = 0) -> np.ndarray:
    """``samples`` draws of one run's Avg mIoU over ``domains``, each domain's test images resampled with
    replacement (``counts[domain]``: n×3×K per-image counts) — the spread a table row owes to which images
    happen to be in the finite target splits."""
    rng = np.random.default_rng(seed)
    mious = []
    for d in domains:
        n = len(counts[d])
        draw = np.stack([np.bincount(rng.integers(0, n, n), minlength=n) for _ in range(samples)])  # B×n
        mious.append(miou_from_counts((draw @ counts[d].reshape(n, -1)).reshape(samples, *counts[d].shape[1:])))
    return np.mean(mious, axis=0)


def half_width(draws: np.ndarray, level: float = 95.0) -> float:
    """Half the width of the central ``level`` % interval of bootstrap draws."""
    low, high = np.percentile(draws, [(100 - level) / 2, 100 - (100 - level) / 2])
    return float((high - low) / 2)
