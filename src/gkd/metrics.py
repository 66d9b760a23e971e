"""Confusion-matrix mIoU over a whole split (not averaged per image), ignore index 255.

Prediction and ground truth are compared pixel for pixel at the ground truth's resolution: under the
paper's protocol the label is never resized, the logits are (``gkd.stages.evaluate``).
"""
from __future__ import annotations

import numpy as np
import torch

from gkd.data.prepared import IGNORE


def confusion(pred: torch.Tensor, label: torch.Tensor, num_classes: int) -> torch.Tensor:
    """K×K counts, rows = ground truth, columns = prediction; ignore pixels skipped."""
    if pred.shape != label.shape:
        raise ValueError(f"prediction is {tuple(pred.shape)} but its label is {tuple(label.shape)}; "
                         f"resize the logits to the label's size before argmax")
    valid = label != IGNORE
    if (label[valid] >= num_classes).any() or (label[valid] < 0).any():
        bad = torch.unique(label[valid][(label[valid] >= num_classes) | (label[valid] < 0)]).tolist()
        raise ValueError(f"label values {bad} outside the {num_classes} classes (and ignore {IGNORE})")
    idx = label[valid].long() * num_classes + pred[valid].long()
    return torch.bincount(idx, minlength=num_classes * num_classes).reshape(num_classes, num_classes)


def iou_from_confusion(conf: np.ndarray) -> tuple[float, list[float | None]]:
    """(mIoU in %, per-class IoU in % or None for classes absent from both prediction and truth)."""
    conf = np.asarray(conf, dtype=np.float64)
    tp = np.diag(conf)
    union = conf.sum(0) + conf.sum(1) - tp
    per_class = [None if u == 0 else float(100 * t / u) for t, u in zip(tp, union)]
    present = [v for v in per_class if v is not None]
    return (float(np.mean(present)) if present else float("nan")), per_class
