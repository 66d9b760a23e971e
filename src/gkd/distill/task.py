"""Task training of a segmenter on source labels: CE plus whatever the method adds (KD terms).

Used by every method's ``adapt`` stage: GKD (frozen backbone, decoder only), Student-only and the
KD baselines (end to end), and by ``teacher_task`` through the same decoder code.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from gkd.data.prepared import IGNORE
from gkd.distill.losses import weighted_sum


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
        backbone, taps = self.segmenter.backbone, self.method.student_taps
        with torch.set_grad_enabled(torch.is_grad_enabled() and not self.frozen):
            out = backbone.forward_tokens(images, taps=taps)
        tokens, levels = out[0], out[1]
        logits = self.segmenter.decoder(levels)
        terms = {"ce": cross_entropy(logits, labels)}
        teacher = {k: v.detach() for k, v in (teacher or {}).items()}  # the teacher is a constant
        kd = self.method.task_terms(self, logits=logits, levels=levels, tokens=tokens,
                                    taps=out[2] if taps else [], labels=labels, teacher=teacher)
        terms.update(kd)
        terms["loss"] = terms["ce"] + weighted_sum(kd, self.method.task_weights()) if kd else terms["ce"]
        return terms


def fit_segmenter(cfg, acc, model, method, frozen: bool, data, source: str, caches: dict, extra, resume_dir, live,
                  desc: str):
    """Task training on the labelled source split with the `adapt` recipe (shared by every row).

    ``caches`` maps a teacher input name (``logits``, ``levels``) to its FeatureCache; each batch gets
    the rows of its images, mirrored with the student's view. Returns (trained segmenter, steps).
    """
    from gkd import train
    from gkd.config import ConfigError
    from gkd.data.prepared import SegmentationSplit

    a = cfg.adapt
    dataset = SegmentationSplit(data, source, "train")
    for name, cache in caches.items():
        if cache.num_images != len(dataset):
            raise ConfigError(f"teacher {name} cache has {cache.num_images} images, the source split {len(dataset)}")
    task = SegTask(model, method, frozen_backbone=frozen, extra=extra)
    groups = train.param_groups(list(model.decoder.named_parameters()), a.lr, a.weight_decay)
    if extra is not None:
        groups += train.param_groups(list(extra.named_parameters()), a.lr, a.weight_decay)
    if not frozen:
        groups += train.param_groups(list(model.backbone.named_parameters()), a.backbone_lr, a.weight_decay)
    optimizer = torch.optim.AdamW(groups)

    grid = model.backbone.grid

    def step(module, batch, phase, epoch):
        images, labels, idx = batch
        x, flips = train.augment(images, train.sample_rngs(cfg.seed, epoch, idx), a.hflip, a.color_jitter)
        teacher = {name: flip_teacher(name, cache.get(name, idx.tolist()).to(x.device), flips, grid)
                   for name, cache in caches.items()}
        return module(x, train.flip_maps(labels, flips), teacher)

    steps = train.fit(acc=acc, module=task, optimizer=optimizer, phases=[train.Phase("train", dataset, a.epochs)],
                      batch_size=a.batch_size, step_fn=step, min_lr_ratio=a.min_lr / a.lr, seed=cfg.seed,
                      resume_dir=resume_dir, checkpoint_every=a.checkpoint_every, live=live, desc=desc)
    return acc.unwrap_model(task).segmenter, steps


def flip_teacher(name: str, value: torch.Tensor, flips: torch.Tensor, grid: tuple[int, int]) -> torch.Tensor:
    """Mirror cached teacher outputs of flipped samples, whatever their layout.

    logits B×K×h×w and levels B×L×D×h×w are maps; tokens B×(1+N)×D and shallow B×L×N×D are token
    sequences on the grid (CLS, where present, stays put).
    """
    from gkd import train
    if name in ("logits", "levels"):
        return train.flip_maps(value, flips)
    if name == "tokens":
        return train.flip_tokens(value, flips, grid)
    if name == "shallow":
        b, l, n, d = value.shape
        grids = value.reshape(b, l, grid[0], grid[1], d)
        return train.flip_maps(grids.transpose(-1, -2), flips).transpose(-1, -2).reshape(b, l, n, d)
    raise ValueError(f"unknown teacher input {name!r}")
