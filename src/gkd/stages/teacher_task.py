"""Stage `teacher_task`: frozen teacher + decoder trained on source labels (the table's Teacher row).

Same recipe as GKD's stage 2 (frozen backbone, decoder trained with the `adapt` settings on the same
views), so the Teacher row and the +GKD row differ only in the backbone. The trained teacher segmenter
is then run once on every view of every source training image and its logits stored for the
logit-distillation baselines (signal ``logits`` of ``gkd.features``).
"""
from __future__ import annotations

import logging
from pathlib import Path

import torch

from gkd import features, train
from gkd.data.prepared import SegmentationSplit, read_meta
from gkd.task import CrossEntropyOnly, fit_segmenter
from gkd.models.artifacts import load_backbone, new_segmenter, save_segmenter
from gkd.stages import common

log = logging.getLogger(__name__)
# the `adapt` recipe on the same views as every student; the logits are cached like the teacher's tokens
READS = common.Reads("seed", "benchmark.patch_size", "views", "adapt", "teacher_features.batch_size",
                     "teacher_features.shard_size", "runtime")


def run(cfg, data: Path, teacher_dir: Path, out: Path, live_dir: Path | None) -> None:
    meta = read_meta(data)
    a = cfg.adapt
    with train.StageRun(cfg.runtime, cfg.seed, out, live_dir) as run:
        teacher = load_backbone(teacher_dir, img_size=meta.image_size, seed=cfg.seed,
                                patch_size=cfg.benchmark.patch_size)
        model = new_segmenter(teacher, a.decoder, a.decoder_dim, meta.num_classes)
        trained, steps = fit_segmenter(cfg, run.acc, model, CrossEntropyOnly(), frozen=True, data=data,
                                       source=meta.source, teacher={}, resume_dir=run.resume, live=run.live,
                                       desc="teacher decoder")

        def write(tmp: Path) -> None:
            save_segmenter(tmp, trained, meta.image_size, a.decoder, a.decoder_dim, meta.classes,
                           {"role": "teacher", "teacher": cfg.teacher_name, "benchmark": cfg.benchmark_name,
                            "frozen_backbone": True, "steps": steps}, palette=meta.palette)
            cache_logits(cfg, trained.eval(), data, meta.source, tmp / "logits", run.acc.device)
        run.save(write)


@torch.no_grad()
def cache_logits(cfg, segmenter, data: Path, source: str, directory: Path, device) -> None:
    """Teacher logits on the token grid for every view of every source training image (logit-KD targets)."""
    directory.mkdir(parents=True)
    dataset = SegmentationSplit(data, source, "train", with_labels=False, memo_bytes=0)
    tf = cfg.teacher_features
    shapes = features.extract(lambda x: {"logits": segmenter(x)}, dataset, directory, views_cfg=cfg.views,
                              seed=cfg.seed, batch_size=tf.batch_size, shard_size=tf.shard_size, desc="logits",
                              device=device)
    features.write_index(directory, len(dataset), cfg.views.count, tf.shard_size, shapes,
                         {"what": "teacher_task logits on every view of source train", "views_config": cfg.raw["views"]})


def main(argv=None) -> None:
    p = common.parser(__doc__.splitlines()[0], selectors=("benchmark", "teacher"))
    p.input("--data", required=True, type=Path)
    p.input("--teacher-weights", required=True, type=Path)
    p.output("--out", required=True, type=Path)
    p.output("--live", type=Path, default=None, help="dvclive folder for training curves")
    args = p.parse_args(argv)
    cfg = common.setup(args, READS, ("benchmark", "teacher"))
    run(cfg, args.data, args.teacher_weights, args.out, args.live)


if __name__ == "__main__":
    common.run_main(main)
