"""Backbones pretrained here, on the generic stream only (never the source or a target domain).

The synthetic benchmark's stand-ins for the paper's pretrained models (README, "What the default run does"):

* ``dense`` (``weights: pretrain``) — a stand-in *VFM*: per-pixel supervised training on the generic
  stream's labels, a linear head on the last level (thrown away). The F2F student and `tiny_vfm`.
* ``classify`` (``weights: classify``) — a stand-in for an *ImageNet-supervised DeiT*, the F2L student:
  image-level labels only. Each sample is a square crop of a generic image centred on a pixel of a
  class drawn uniformly from those present, resized to the input size and labelled with its majority
  class — one label per image, as an ImageNet photo; a LayerNorm+Linear classifier on the mean patch
  token (thrown away), label-smoothed cross-entropy, AdamW with linear warm-up and cosine decay.
"""
from __future__ import annotations

import dataclasses
import logging
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from gkd import train
from gkd.config import ModelConfig, ViewsConfig
from gkd.data import views
from gkd.data.prepared import IGNORE, SegmentationSplit, read_meta
from gkd.task import CrossEntropyOnly, SegTask
from gkd.errors import ConfigError
from gkd.models.artifacts import new_segmenter
from gkd.models.backbone import create_backbone

log = logging.getLogger(__name__)


def _generic(cfg, name: str, data: Path):
    meta = read_meta(data)
    if "generic" not in meta.splits:
        raise ConfigError(f"{name!r} is pretrained on the benchmark's generic stream; benchmark {cfg.benchmark_name!r} "
                          f"has none (synthetic: set generic_images > 0)")
    return meta, SegmentationSplit(data, "generic", "train")


def dense(cfg, preset: ModelConfig, name: str, data: Path, resume_dir: Path | None):
    """The stand-in VFM: per-pixel CE on the generic stream. Returns (backbone, provenance)."""
    meta, dataset = _generic(cfg, name, data)
    p = cfg.pretrain
    acc = train.make_accelerator(cfg.runtime)
    train.seed_everything(cfg.seed)
    backbone = create_backbone(dataclasses.replace(preset, weights="none"), meta.image_size, seed=cfg.seed,
                               patch_size=cfg.benchmark.patch_size)
    model = new_segmenter(backbone, "linear", 0, meta.num_classes)
    module = SegTask(model, CrossEntropyOnly(), frozen_backbone=False)
    optimizer = torch.optim.AdamW(train.param_groups(list(module.named_parameters()), p.lr, p.weight_decay))
    flips = ViewsConfig(hflip=p.hflip, photometric=0, jitter=0.0)

    def step(module, batch, phase, epoch):
        images, labels, idx = batch
        view = views.choose(train.sample_rngs(cfg.seed, epoch, idx), flips.count)
        x = views.render(images, idx, view, flips, cfg.seed).to(acc.device)
        return module(x, views.render_labels(labels, view, flips).to(acc.device))

    steps = train.fit(acc=acc, module=module, optimizer=optimizer, phases=[train.Phase("generic", dataset, p.epochs)],
                      batch_size=p.batch_size, step_fn=step, min_lr_ratio=p.min_lr / p.lr, seed=cfg.seed,
                      resume_dir=resume_dir, checkpoint_every=p.checkpoint_every, desc=f"pretrain {name}",
                      warmup_steps=p.warmup_steps, ema=p.ema)
    info = {"source": "pretrain", "recipe": dataclasses.asdict(p), "data": "generic/train", "images": len(dataset),
            "steps": steps,
            "note": "stand-in VFM: per-pixel supervised on the generator's randomised-appearance stream, no target domain"}
    return acc, acc.unwrap_model(module).segmenter.backbone, info


class CropClassifier(nn.Module):
    """Backbone + LayerNorm/Linear classifier on the mean patch token; ``forward`` returns loss terms."""

    def __init__(self, backbone, num_classes: int, smoothing: float):
        super().__init__()
        self.backbone = backbone
        self.head = nn.Sequential(nn.LayerNorm(backbone.embed_dim), nn.Linear(backbone.embed_dim, num_classes))
        self.smoothing = smoothing

    def forward(self, crops: torch.Tensor, labels: torch.Tensor) -> dict:
        tokens = self.backbone.forward_tokens(crops, with_levels=False)[0]
        logits = self.head(tokens[:, 1:].mean(1))
        return {"loss": F.cross_entropy(logits, labels, label_smoothing=self.smoothing),
                "acc": (logits.argmax(1) == labels).float().mean()}


def crops(images: torch.Tensor, labels: torch.Tensor, rngs: list[np.random.Generator], num_classes: int,
          size_range: tuple[int, int], out: int) -> tuple[torch.Tensor, torch.Tensor]:
    """One labelled crop per image (see the module docstring): (float B×3×out×out, majority class B)."""
    from torchvision.ops import roi_align

    h, w = labels.shape[-2:]
    boxes, classes = [], []
    for i, rng in enumerate(rngs):
        lab = labels[i].numpy()
        present = np.unique(lab[lab < num_classes])
        ys, xs = np.nonzero(lab == rng.choice(present))
        j = rng.integers(len(ys))
        side = rng.uniform(*size_range)
        cy = float(np.clip(ys[j] + 0.5, side / 2, h - side / 2))
        cx = float(np.clip(xs[j] + 0.5, side / 2, w - side / 2))
        y0, x0 = cy - side / 2, cx - side / 2
        boxes.append([i, x0, y0, x0 + side, y0 + side])
        window = lab[int(y0):int(y0 + side), int(x0):int(x0 + side)]
        classes.append(int(np.bincount(window[window != IGNORE].ravel(), minlength=num_classes).argmax()))
    x = images.float() / 255.0
    mirror = torch.tensor([bool(r.random() < 0.5) for r in rngs])  # a mirrored box on the mirrored image
    x = torch.where(mirror.view(-1, 1, 1, 1), x.flip(-1), x)
    boxes = [[b[0], w - b[3], b[2], w - b[1], b[4]] if m else b for b, m in zip(boxes, mirror.tolist())]
    crops_ = roi_align(x, torch.tensor(boxes, dtype=torch.float32), output_size=out, sampling_ratio=2, aligned=True)
    return crops_, torch.tensor(classes)


class _Repeat(torch.utils.data.Dataset):
    """``steps × batch`` draws of a dataset: the crop classifier trains for a number of steps, not epochs."""

    def __init__(self, dataset, length: int):
        self.dataset, self.length = dataset, length

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, i: int):
        image, label, _ = self.dataset[i % len(self.dataset)]
        return image, label, i


def classify(cfg, preset: ModelConfig, name: str, data: Path, resume_dir: Path | None):
    """The stand-in for ImageNet-supervised DeiT: crop classification on the generic stream."""
    meta, generic = _generic(cfg, name, data)
    p = cfg.student_pretrain
    if not 0 < p.crop_min <= p.crop_max <= meta.image_size:
        raise ConfigError(f"student_pretrain: need 0 < crop_min <= crop_max <= image size {meta.image_size}, got "
                          f"crop_min {p.crop_min}, crop_max {p.crop_max}")
    acc = train.make_accelerator(cfg.runtime)
    train.seed_everything(cfg.seed)
    backbone = create_backbone(dataclasses.replace(preset, weights="none"), meta.image_size, seed=cfg.seed,
                               patch_size=cfg.benchmark.patch_size)
    module = CropClassifier(backbone, meta.num_classes, p.label_smoothing)
    optimizer = torch.optim.AdamW(train.param_groups(list(module.named_parameters()), p.lr, p.weight_decay))
    if p.images < 0:
        raise ConfigError(f"student_pretrain.images must be >= 0 (0: every generic image), got {p.images}")
    if p.images:
        generic = torch.utils.data.Subset(generic, range(min(p.images, len(generic))))
    dataset = _Repeat(generic, p.steps * p.batch_size)

    def step(module, batch, phase, epoch):
        images, labels, idx = batch
        x, y = crops(images, labels, train.sample_rngs(cfg.seed, epoch, idx), meta.num_classes,
                     (p.crop_min, p.crop_max), meta.image_size)
        return module(x.to(acc.device), y.to(acc.device))

    steps = train.fit(acc=acc, module=module, optimizer=optimizer, phases=[train.Phase("generic", dataset, 1)],
                      batch_size=p.batch_size, step_fn=step, min_lr_ratio=p.min_lr / p.lr, seed=cfg.seed,
                      resume_dir=resume_dir, checkpoint_every=p.checkpoint_every, desc=f"pretrain {name}",
                      warmup_steps=p.warmup_steps, ema=p.ema)
    info = {"source": "classify", "recipe": dataclasses.asdict(p), "data": "generic/train (labelled crops)",
            "images": len(generic), "steps": steps,
            "note": "stand-in for ImageNet-supervised DeiT: one majority-class label per crop of the generic "
                    "stream, no pixel labels, no source or target domain"}
    return acc, acc.unwrap_model(module).backbone, info
