"""Stage `teacher_task`: frozen teacher + decoder trained on source labels (the table's Teacher row).

The decoder trains on the teacher's multi-level features cached by `teacher_features` (the teacher is
frozen, so its features never change: many decoder epochs cost almost nothing). The result is saved
as a full segmenter (evaluated like any model) and its logits on the source training split are
cached for the logit-distillation baselines.
"""
from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import torch

from gkd import io
from gkd.data.prepared import SegmentationSplit, read_meta
from gkd.distill.task import cross_entropy
from gkd.features import FeatureCache, save_shard, write_index
from gkd.models.artifacts import load_backbone, new_segmenter, save_segmenter
from gkd.stages import common

log = logging.getLogger("gkd.teacher_task")


class CachedLevels(torch.utils.data.Dataset):
    """(teacher levels L×D×h×w, label, index) from the feature cache and the prepared split."""

    def __init__(self, cache: FeatureCache, labels: SegmentationSplit):
        if cache.num_images != len(labels):
            raise ValueError(f"feature cache has {cache.num_images} images, the split {len(labels)}: rerun teacher_features")
        self.cache, self.labels = cache, labels

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, i):
        return self.cache.get("levels", [i])[0], self.labels[i][1], i


class DecoderTask(torch.nn.Module):
    def __init__(self, decoder):
        super().__init__()
        self.decoder = decoder

    def forward(self, levels, labels):
        ce = cross_entropy(self.decoder(list(levels.unbind(1))), labels)
        return {"loss": ce, "ce": ce}


def run(cfg, data: Path, teacher_dir: Path, features: Path, out: Path, live_dir: Path | None) -> None:
    from gkd import train
    acc = train.make_accelerator()
    train.seed_everything(cfg.seed)
    meta = read_meta(data)
    a = cfg.adapt
    teacher = load_backbone(teacher_dir, img_size=meta.image_size, seed=cfg.seed, patch_size=cfg.benchmark.patch_size)
    model = new_segmenter(teacher, a.decoder, a.decoder_dim, meta.num_classes)
    cache = FeatureCache(features / "train")
    dataset = CachedLevels(cache, SegmentationSplit(data, meta.source, "train"))
    module = DecoderTask(model.decoder)
    optimizer = torch.optim.AdamW(train.param_groups(list(module.named_parameters()), a.lr, a.weight_decay))
    resume = out.with_name(f".{out.name}.resume")
    live = train.open_live(live_dir, resume=resume.exists()) if acc.is_main_process else None

    def step(module, batch, phase, epoch):
        levels, labels, _ = batch
        return module(levels, labels)

    train.fit(acc=acc, module=module, optimizer=optimizer, phases=[train.Phase("train", dataset, a.teacher_epochs)],
              batch_size=a.batch_size, step_fn=step, min_lr_ratio=a.min_lr / a.lr, seed=cfg.seed, resume_dir=resume,
              checkpoint_every=a.checkpoint_every, live=live, desc="teacher decoder")
    decoder = acc.unwrap_model(module).decoder.eval()
    if acc.is_main_process:
        with io.atomic_path(out, is_dir=True) as tmp:
            save_segmenter(tmp, model, cfg.teacher, meta.image_size, a.decoder, a.decoder_dim, meta.classes,
                           {"role": "teacher", "teacher": cfg.teacher_name, "benchmark": cfg.benchmark_name})
            cache_logits(decoder, cache, tmp / "logits", cfg.teacher_features.shard_size)
        if live is not None:
            live.end()
    import shutil
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
