"""Stage `distill` (stage 1): label-free representation distillation of the student from cached teacher tokens.

Phases: 1a on the generic stream (if the benchmark has one and ``distill.generic_epochs`` > 0), then
1b on the source training images — images only, no labels. The teacher is never run here: its
tokens come from the `teacher_features` cache, flipped on the token grid when the student's view is
flipped; photometric jitter touches the student's view only.
"""
from __future__ import annotations

import logging
import shutil
from pathlib import Path

import torch

from gkd import io
from gkd.config import ConfigError
from gkd.data.prepared import SegmentationSplit, read_meta
from gkd.distill import build_method
from gkd.distill.masking import first_half_mask
from gkd.features import FeatureCache
from gkd.models.artifacts import load_backbone, save_backbone
from gkd.stages import common

log = logging.getLogger("gkd.distill")


def run(cfg, method_name: str, data: Path, student_weights: Path, features: Path, out: Path,
        live_dir: Path | None) -> None:
    from gkd import train
    method = build_method(cfg, method_name)
    if not method.stage1:
        raise ConfigError(f"method {method_name!r} has no stage 1 (distill); it trains in `adapt` only")
    meta = read_meta(data)
    d = cfg.distill
    phases = []
    if "generic" in meta.splits and d.generic_epochs > 0:
        phases.append(("generic", "generic", d.generic_epochs))
    if d.source_epochs > 0:
        phases.append(("train", meta.source, d.source_epochs))
    if not phases:
        raise ConfigError("distill: no phase to run (generic_epochs and source_epochs are both 0)")
    caches = {key: FeatureCache(features / key) for key, _, _ in phases}
    datasets = {key: SegmentationSplit(data, domain, "train", with_labels=False) for key, domain, _ in phases}
    for key in caches:
        if caches[key].num_images != len(datasets[key]):
            raise ConfigError(f"feature cache {features / key} has {caches[key].num_images} images, the split "
                              f"{len(datasets[key])}; rerun teacher_features")

    acc = train.make_accelerator(cfg.runtime)
    train.seed_everything(cfg.seed)
    student = load_backbone(student_weights, img_size=meta.image_size, seed=cfg.seed,
                            patch_size=cfg.benchmark.patch_size, with_mask_token=True)
    teacher_dim = caches[phases[0][0]].index["arrays"]["tokens"]["shape"][-1]
    teacher_tokens = caches[phases[0][0]].index["arrays"]["tokens"]["shape"][0]
    if teacher_tokens != 1 + student.num_patches:
        raise ConfigError(f"token grids differ: teacher cache has {teacher_tokens - 1} patches, student "
                          f"{student.num_patches}; both must use the benchmark's patch_size")
    module = method.stage1_module(student, teacher_dim)
    optimizer = torch.optim.AdamW(train.param_groups(list(module.named_parameters()), d.lr, d.weight_decay))
    resume = out.with_name(f".{out.name}.resume")
    live = train.open_live(live_dir, resume=resume.exists()) if acc.is_main_process else None
    grid = student.grid

    def step(module, batch, phase, epoch):
        images, _, idx = batch
        rngs = train.sample_rngs(cfg.seed, epoch, idx)
        x, flips = train.augment(images, rngs, d.hflip, d.color_jitter)
        tokens = train.flip_tokens(caches[phase].get("tokens", idx.tolist()).to(x.device), flips, grid)
        mask = first_half_mask(rngs, grid[0] * grid[1], method.mask_ratio).to(x.device)
        return module(x, tokens, mask)

    steps = train.fit(acc=acc, module=module, optimizer=optimizer,
                      phases=[train.Phase(key, datasets[key], epochs) for key, _, epochs in phases],
                      batch_size=d.batch_size, step_fn=step, min_lr_ratio=d.min_lr / d.lr, seed=cfg.seed,
                      resume_dir=resume, checkpoint_every=d.checkpoint_every, live=live, desc=f"distill {method_name}")
    if acc.is_main_process:
        trained = acc.unwrap_model(module).student
        with io.atomic_path(out, is_dir=True) as tmp:
            save_backbone(tmp, trained, cfg.student, meta.image_size,
                          {"method": method_name, "teacher": cfg.teacher_name, "steps": steps,
                           "phases": [dict(split=k, epochs=e) for k, _, e in phases]})
        if live is not None:
            live.end()
    acc.wait_for_everyone()
    shutil.rmtree(resume, ignore_errors=True)


def main(argv=None) -> None:
    p = common.parser(__doc__.splitlines()[0], selectors=("benchmark", "teacher", "student"))
    p.add_argument("--method", required=True)
    p.add_argument("--data", required=True, type=Path)
    p.add_argument("--student-weights", required=True, type=Path, help="student initialisation (student_weights)")
    p.add_argument("--features", required=True, type=Path)
    p.add_argument("--out", required=True, type=Path)
    p.add_argument("--live", type=Path, default=None)
    args = p.parse_args(argv)
    cfg = common.setup(args, ("benchmark", "teacher", "student"))
    run(cfg, args.method, args.data, args.student_weights, args.features, args.out, args.live)


if __name__ == "__main__":
    common.run_main(main)
