"""Task training of a segmenter on source labels: CE plus whatever the method adds (KD terms).

Used by every method's ``adapt`` stage: GKD (frozen backbone, decoder only), Student-only and the
KD baselines (end to end), and by ``teacher_task`` through the same decoder code.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from gkd import train
from gkd.data import views
from gkd.data.prepared import IGNORE, SegmentationSplit
from gkd.features import TeacherBatch
from gkd.methods.losses import weighted_sum


def cross_entropy(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
    """CE on labels at full resolution; token-grid logits are upsampled bilinearly first."""
    up = F.interpolate(logits, size=labels.shape[-2:], mode="bilinear", align_corners=False)
    return F.cross_entropy(up, labels, ignore_index=IGNORE)


class CrossEntropyOnly:
    """The task loss alone, no distillation term: the teacher's decoder (Teacher row) and the stand-in VFM's
    pretraining train with it (a method without a teacher, but not a row of the tables)."""
    student_taps: tuple[int, ...] = ()

    def task_terms(self, task, **outputs) -> dict:
        return {}

    def task_weights(self) -> dict[str, float]:
        return {}


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

    def forward(self, images: torch.Tensor, labels: torch.Tensor, teacher: dict[str, torch.Tensor] | None = None):
        backbone, taps = self.segmenter.backbone, self.method.student_taps
        with torch.set_grad_enabled(torch.is_grad_enabled() and not self.frozen):
            out = backbone.forward_tokens(images, taps=taps)
        tokens, levels = out[0], out[1]
        logits = self.segmenter.decoder(levels)
        terms = {"ce": cross_entropy(logits, labels)}
        teacher = TeacherBatch.of(teacher)  # detached: the teacher is a constant
        kd = self.method.task_terms(self, logits=logits, levels=levels, tokens=tokens,
                                    taps=out[2] if taps else [], labels=labels, teacher=teacher)
        terms.update(kd)
        terms["loss"] = terms["ce"] + weighted_sum(kd, self.method.task_weights()) if kd else terms["ce"]
        return terms


def segmenter_step(views_cfg, *, train_seed: int, data_seed: int, device, teacher: dict):
    """One task-training step: each sample as one of its views (chosen per run seed, epoch and sample),
    labels mirrored with it, the teacher signals of exactly those views → the SegTask's loss."""
    def step(module, batch, phase, epoch):
        images, labels, idx = batch
        view = views.choose(train.sample_rngs(train_seed, epoch, idx), views_cfg.count)
        x = views.render(images, idx, view, views_cfg, data_seed).to(device)
        signals = {name: cache.get(name, idx.numpy(), view.numpy()).to(device) for name, cache in teacher.items()}
        return module(x, views.render_labels(labels, view, views_cfg).to(device), signals)
    return step


def fit_segmenter(cfg, acc, model, method, *, frozen: bool, data, source: str, teacher: dict, extra=None,
                  resume_dir=None, live=None, desc: str = "adapt"):
    """Task training on the labelled source split with the `adapt` recipe (shared by every row).

    Each sample is seen as one of its views (``gkd.data.views``, chosen per run seed, epoch and sample),
    labels mirrored with it; ``teacher`` maps a teacher signal (``logits``, ``tokens``, ``shallow``,
    ``last``) to its TeacherCache, read for exactly those views. Returns (trained segmenter, steps).
    """

    a, v, seed = cfg.adapt, cfg.views, cfg.train_seed
    dataset = SegmentationSplit(data, source, "train")
    for name, cache in teacher.items():
        cache.check(len(dataset), v.count, f"teacher {name} for {source}/train")
    task = SegTask(model, method, frozen_backbone=frozen, extra=extra)
    groups = train.param_groups(list(model.decoder.named_parameters()), a.lr, a.weight_decay)
    if extra is not None:
        groups += train.param_groups(list(extra.named_parameters()), a.lr, a.weight_decay)
    if not frozen:
        groups += train.param_groups(list(model.backbone.named_parameters()), a.backbone_lr, a.weight_decay)
    optimizer = torch.optim.AdamW(groups)

    step = segmenter_step(v, train_seed=seed, data_seed=cfg.seed, device=acc.device, teacher=teacher)
    steps = train.fit(acc=acc, module=task, optimizer=optimizer, phases=[train.Phase("train", dataset, a.epochs)],
                      batch_size=a.batch_size, step_fn=step, min_lr_ratio=a.min_lr / a.lr, seed=seed,
                      resume_dir=resume_dir, checkpoint_every=a.checkpoint_every, live=live, desc=desc,
                      warmup_steps=a.warmup_steps, ema=a.ema)
    return acc.unwrap_model(task).segmenter, steps
