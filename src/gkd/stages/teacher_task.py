"""Stage `teacher_task`: frozen teacher + decoder trained on source labels (the table's Teacher row).

Same recipe as GKD's stage 2 (frozen backbone, decoder trained with the `adapt` settings and
augmentation), so the Teacher row and the +GKD row differ only in the backbone. The teacher's logits
on the source training split are then computed once from the cached (un-augmented) teacher features
and stored for the logit-distillation baselines.
"""
from __future__ import annotations

import logging
import shutil
from pathlib import Path

import torch

from gkd import io
from gkd.data.prepared import read_meta
from gkd.distill.student_only import StudentOnly, StudentOnlyOptions
from gkd.distill.task import fit_segmenter
from gkd.features import FeatureCache, save_shard, write_index
from gkd.models.artifacts import load_backbone, new_segmenter, save_segmenter
from gkd.stages import common

log = logging.getLogger("gkd.teacher_task")


def run(cfg, data: Path, teacher_dir: Path, features: Path, out: Path, live_dir: Path | None) -> None:
    from gkd import train
    acc = train.make_accelerator(cfg.runtime)
    train.seed_everything(cfg.seed)
    meta = read_meta(data)
    a = cfg.adapt
    teacher = load_backbone(teacher_dir, img_size=meta.image_size, seed=cfg.seed, patch_size=cfg.benchmark.patch_size)
    model = new_segmenter(teacher, a.decoder, a.decoder_dim, meta.num_classes)
    cache = FeatureCache(features / "train")  # fail early, before training, if the cache is missing
    resume = out.with_name(f".{out.name}.resume")
    live = train.open_live(live_dir, resume=resume.exists()) if acc.is_main_process else None
    trained, steps = fit_segmenter(cfg, acc, model, StudentOnly(StudentOnlyOptions()), True, data, meta.source, {}, None,
                                   resume, live, desc="teacher decoder")
    if acc.is_main_process:
        with io.atomic_path(out, is_dir=True) as tmp:
            save_segmenter(tmp, trained, meta.image_size, a.decoder, a.decoder_dim, meta.classes,
                           {"role": "teacher", "teacher": cfg.teacher_name, "benchmark": cfg.benchmark_name,
                            "frozen_backbone": True, "steps": steps}, palette=meta.palette)
            cache_logits(trained.decoder.eval(), cache, tmp / "logits", cfg.teacher_features.shard_size)
        if live is not None:
            live.end()
    acc.wait_for_everyone()
    shutil.rmtree(resume, ignore_errors=True)


@torch.no_grad()
def cache_logits(decoder, cache: FeatureCache, directory: Path, shard_size: int) -> None:
    """Teacher logits on the token grid for every source training image (logit-KD targets)."""
    directory.mkdir(parents=True)
    n = cache.num_images
    shape = None
    for k in range(-(-n // shard_size)):
        rows = list(range(k * shard_size, min(n, (k + 1) * shard_size)))
        chunks = [decoder(list(cache.get("levels", rows[i:i + 256]).unbind(1))) for i in range(0, len(rows), 256)]
        logits = torch.cat(chunks).numpy()
        save_shard(directory, "logits", k, logits)
        shape = logits.shape[1:]
    write_index(directory, n, shard_size, {"logits": shape}, {"what": "teacher_task logits on source train"})


def main(argv=None) -> None:
    p = common.parser(__doc__.splitlines()[0], selectors=("benchmark", "teacher"))
    p.add_argument("--data", required=True, type=Path)
    p.add_argument("--teacher-weights", required=True, type=Path)
    p.add_argument("--features", required=True, type=Path)
    p.add_argument("--out", required=True, type=Path)
    p.add_argument("--live", type=Path, default=None, help="dvclive folder for training curves")
    args = p.parse_args(argv)
    cfg = common.setup(args, ("benchmark", "teacher"))
    run(cfg, args.data, args.teacher_weights, args.features, args.out, args.live)


if __name__ == "__main__":
    common.run_main(main)
