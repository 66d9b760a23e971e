"""Stage `teacher_features`: run the frozen teacher once and cache its tokens (fp16 shards + index).

For the source training split: final-LN CLS + patch tokens (stage-1 targets), the multi-level block
outputs the decoder reads (teacher logits for the KD baselines, Af-DCD's last feature map) and the
patch tokens of blocks 1-2 (ViTKD). For the generic stream, if the
benchmark has one: tokens only (stage-1a targets). Every later stage reads this cache; none re-runs
the teacher per training step.

Multi-process: each rank extracts whole shards (shard k on rank k mod world) into one shared folder.
"""
from __future__ import annotations

import logging
import os
import shutil
from pathlib import Path

import torch
from tqdm import tqdm

from gkd.data.prepared import SegmentationSplit, read_meta, to_float
from gkd.features import save_shard, write_index
from gkd.models.artifacts import load_backbone
from gkd.stages import common

log = logging.getLogger("gkd.teacher_features")
SHALLOW_BLOCKS = (0, 1)  # patch tokens after blocks 1 and 2: ViTKD's mimicking targets


@torch.no_grad()
def extract(teacher, dataset, directory: Path, batch_size: int, shard_size: int, with_levels: bool, acc) -> dict:
    """Write this rank's shards of ``tokens`` (and ``levels``); returns the per-image shapes."""
    n = len(dataset)
    shards = range(acc.process_index, -(-n // shard_size), acc.num_processes)
    bar = tqdm(total=sum(min(shard_size, n - k * shard_size) for k in shards), desc=directory.name,
               disable=not acc.is_main_process, mininterval=5)
    shapes = {}
    for k in shards:
        parts: dict[str, list] = {"tokens": [], "levels": [], "shallow": []}
        stop = min(n, (k + 1) * shard_size)
        for start in range(k * shard_size, stop, batch_size):
            idx = range(start, min(stop, start + batch_size))
            images = torch.stack([dataset[i][0] for i in idx]).to(acc.device)
            if with_levels:
                tokens, levels, shallow = teacher.forward_tokens(to_float(images), taps=SHALLOW_BLOCKS)
                parts["levels"].append(torch.stack(levels, dim=1).half().cpu())    # B×L×D×h×w
                parts["shallow"].append(torch.stack(shallow, dim=1).half().cpu())  # B×2×N×D
            else:
                tokens, _ = teacher.forward_tokens(to_float(images), with_levels=False)
            parts["tokens"].append(tokens.half().cpu())
            bar.update(len(idx))
        for name, chunks in parts.items():
            if chunks:
                rows = torch.cat(chunks).numpy()
                save_shard(directory, name, k, rows)
                shapes[name] = tuple(rows.shape[1:])
    bar.close()
    return shapes


def run(cfg, data: Path, teacher_dir: Path, out: Path) -> None:
    from gkd import train
    acc = train.make_accelerator(cfg.runtime)
    meta = read_meta(data)
    teacher = load_backbone(teacher_dir, img_size=meta.image_size, seed=cfg.seed,
                            patch_size=cfg.benchmark.patch_size).to(acc.device).eval()
    tf = cfg.teacher_features
    tmp = out.with_name(f".{out.name}.tmp")
    if acc.is_main_process:
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
    acc.wait_for_everyone()
    jobs = [("train", meta.source, "train", True)]
    if "generic" in meta.splits:
        jobs.append(("generic", "generic", "train", False))
    for key, domain, split, with_levels in jobs:
        dataset = SegmentationSplit(data, domain, split, with_labels=False, memo_bytes=0)
        (tmp / key).mkdir(exist_ok=True)
        acc.wait_for_everyone()
        shapes = extract(teacher, dataset, tmp / key, tf.batch_size, tf.shard_size, with_levels, acc)
        shapes = [s for s in acc.gather_for_metrics([shapes], use_gather_object=True) if s][0]
        if acc.is_main_process:
            write_index(tmp / key, len(dataset), tf.shard_size, shapes,
                        {"teacher": cfg.teacher_name, "split": f"{domain}/{split}", "grid": list(teacher.grid),
                         "levels": teacher.levels, "image_size": meta.image_size})
            log.info("%s: %d images cached (%s)", key, len(dataset), ", ".join(f"{k} {v}" for k, v in shapes.items()))
    acc.wait_for_everyone()
    if acc.is_main_process:
        if out.exists():
            shutil.rmtree(out)
        os.replace(tmp, out)


def main(argv=None) -> None:
    p = common.parser(__doc__.splitlines()[0], selectors=("benchmark", "teacher"))
    p.add_argument("--data", required=True, type=Path)
    p.add_argument("--teacher-weights", required=True, type=Path)
    p.add_argument("--out", required=True, type=Path)
    args = p.parse_args(argv)
    cfg = common.setup(args, ("benchmark", "teacher"))
    run(cfg, args.data, args.teacher_weights, args.out)


if __name__ == "__main__":
    common.run_main(main)
