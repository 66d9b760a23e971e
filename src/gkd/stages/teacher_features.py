"""Stage `teacher_features`: run the frozen teacher once per view and cache its signals (fp16 shards).

* ``train`` — every view (``views`` in params) of every source training image: tokens (stage-1
  targets), shallow tokens (ViTKD) and the last feature map (Af-DCD);
* ``generic`` — every view of the generic stream, tokens only (stage-1a targets);
* ``heldout/<domain>`` — the plain view of every held-out image (source val, generic val, each
  target's test split), tokens only: what the stage-1 fidelity report compares the student with.

Every later stage reads this cache; none re-runs the teacher per training step. The signal table and
the cache layout are in ``gkd.features``. Multi-process: each rank writes whole shards (shard k on
rank k mod world) into one shared folder.
"""
from __future__ import annotations

import logging
import os
import shutil
from pathlib import Path

from gkd import features
from gkd.data.prepared import SegmentationSplit, read_meta
from gkd.models.artifacts import load_backbone
from gkd.stages import common
from gkd.train import make_accelerator

log = logging.getLogger(__name__)
READS = common.Reads("seed", "benchmark.patch_size", "views", "teacher_features.batch_size",
                     "teacher_features.shard_size", "runtime")


def jobs(meta) -> list[tuple[str, str, str, bool, tuple[str, ...]]]:
    """(cache key, domain, split, every view?, signals) of everything this stage caches."""
    out = [("train", meta.source, "train", True, ("tokens", "shallow", "last"))]
    if "generic" in meta.splits:
        out.append(("generic", "generic", "train", True, ("tokens",)))
    out += [(features.heldout_key(d), d, s, False, ("tokens",)) for d, s in features.heldout_splits(meta)]
    return out


def run(cfg, data: Path, teacher_dir: Path, out: Path) -> None:
    acc = make_accelerator(cfg.runtime)
    meta = read_meta(data)
    teacher = load_backbone(teacher_dir, img_size=meta.image_size, seed=cfg.seed,
                            patch_size=cfg.benchmark.patch_size).to(acc.device).eval()
    tf = cfg.teacher_features
    tmp = out.with_name(f".{out.name}.tmp")
    if acc.is_main_process:
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
    acc.wait_for_everyone()
    for key, domain, split, every_view, names in jobs(meta):
        dataset = SegmentationSplit(data, domain, split, with_labels=False, memo_bytes=0)
        if not every_view:
            dataset = features.CenterCrop(dataset, meta.image_size)
        views_cfg = cfg.views.for_cache(key) if every_view else None
        (tmp / key).mkdir(parents=True, exist_ok=True)
        acc.wait_for_everyone()
        shapes = features.extract(features.teacher_signals(teacher, names), dataset, tmp / key, views_cfg=views_cfg,
                                  seed=cfg.seed, batch_size=tf.batch_size, shard_size=tf.shard_size, desc=key,
                                  device=acc.device, rank=acc.process_index, world=acc.num_processes)
        shapes = [s for s in acc.gather_for_metrics([shapes], use_gather_object=True) if s][0]
        if acc.is_main_process:
            views = views_cfg.count if views_cfg else 1
            features.write_index(tmp / key, len(dataset), views, tf.shard_size, shapes,
                                 {"teacher": cfg.teacher_name, "split": f"{domain}/{split}", "grid": list(teacher.grid),
                                  "image_size": meta.image_size, "views_config": cfg.raw.get("views") if every_view
                                  else None})
            log.info("%s: %d images x %d views (%s)", key, len(dataset), views,
                     ", ".join(f"{k} {v}" for k, v in shapes.items()))
    acc.wait_for_everyone()
    if acc.is_main_process:
        if out.exists():
            shutil.rmtree(out)
        os.replace(tmp, out)


def main(argv=None) -> None:
    p = common.parser(__doc__.splitlines()[0], selectors=("benchmark", "teacher"))
    p.input("--data", required=True, type=Path)
    p.input("--teacher-weights", required=True, type=Path)
    p.output("--out", required=True, type=Path)
    args = p.parse_args(argv)
    cfg = common.setup(args, READS, ("benchmark", "teacher"))
    run(cfg, args.data, args.teacher_weights, args.out)


if __name__ == "__main__":
    common.run_main(main)
