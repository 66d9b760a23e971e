"""Stage `evaluate`: a trained segmenter on the source val split and every target domain.

mIoU per domain from one confusion matrix per domain (never pooled across domains), per-class IoU,
and Avg = mean mIoU over the target domains. Written as ``metrics/…json`` for `dvc exp show`.

Protocol (the paper's, mmseg's ``mode="slide"`` test): each prepared evaluation image is already at
its dataset's test scale and its label at the original resolution (``gkd.data.real``). An image of
the model's input size is predicted whole; any other through sliding windows of the input size with
stride round(2/3 of it) — 512 / 341 at the paper's size (``Segmenter.predict``). The image-resolution
logits are resized bilinearly to the label's size and only then arg-maxed, so every pixel of the
original ground truth is scored. Consecutive images of one size are batched (``evaluate.batch_size``);
where the size changes a new batch starts, so a split may mix sizes. On `synthetic` every image and
label is the input size: whole batches, no window, no resize.
"""
from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from gkd import io, provenance, train
from gkd.errors import ConfigError
from gkd.data.prepared import SegmentationSplit, read_meta, to_float
from gkd.metrics import confusion, iou_from_confusion
from gkd.models.artifacts import count_params, load_segmenter
from gkd.models.decoders import logits_at
from gkd.stages import common

log = logging.getLogger(__name__)
READS = common.Reads("evaluate", "runtime")


def _as_list(batch: list) -> list:
    """DataLoader collate that keeps samples apart: a split may mix image sizes."""
    return batch


def same_size_runs(batch: list) -> list[list]:
    """Consecutive samples (image, label, index) whose images share one size: each run is one forward."""
    runs: list[list] = []
    for sample in batch:
        if runs and runs[-1][0][0].shape == sample[0].shape:
            runs[-1].append(sample)
        else:
            runs.append([sample])
    return runs


@torch.no_grad()
def evaluate_split(model, dataset, num_classes: int, batch_size: int, acc) -> tuple[np.ndarray, np.ndarray]:
    """(confusion matrix K×K of the whole split, per-image counts n×3×K: true positives, ground-truth and
    predicted pixels per class — what a bootstrap over images resamples), at each label's resolution."""
    # Each rank takes every world-th image (no padding duplicates); results are gathered in image order.
    shard = torch.utils.data.Subset(dataset, range(acc.process_index, len(dataset), acc.num_processes))
    loader = torch.utils.data.DataLoader(shard, batch_size=batch_size, shuffle=False, collate_fn=_as_list)
    conf = torch.zeros(num_classes, num_classes, dtype=torch.long, device=acc.device)
    counts, order = [], []
    for batch in tqdm(loader, desc="eval", disable=not acc.is_main_process, leave=False, mininterval=5):
        for run in same_size_runs(batch):
            logits = model.predict(to_float(torch.stack([image for image, _, _ in run]).to(acc.device)))
            for one, (_, label, idx) in zip(logits, run):
                label = label.to(acc.device)  # the paper's protocol: logits to the label's size, then argmax
                c = confusion(logits_at(one, label.shape).argmax(0), label, num_classes)
                conf += c
                counts.append(torch.stack([c.diagonal(), c.sum(1), c.sum(0)]).cpu())
                order.append(int(idx))
    gathered = acc.gather_for_metrics([(order, torch.stack(counts).numpy() if counts else None)], use_gather_object=True)
    rows = {i: row for o, c in gathered if c is not None for i, row in zip(o, c)}
    per_image = np.stack([rows[i] for i in range(len(dataset))]).astype(np.int64)
    return acc.reduce(conf, reduction="sum").cpu().numpy(), per_image


def run(cfg, model_dir: Path, data: Path, out: Path, name: str, per_image_out: Path | None = None) -> dict:
    acc = train.make_accelerator(cfg.runtime)
    meta = read_meta(data)
    model, info = load_segmenter(model_dir)
    model = model.to(acc.device).eval()
    if info["classes"] != meta.classes:
        raise ConfigError(f"model {model_dir} predicts {info['classes']}, benchmark has {meta.classes}")
    has_val = "val" in meta.splits.get(meta.source, {})
    domains = ([(meta.source, "val")] if has_val else []) + [(t, "test") for t in meta.targets]
    result = {"name": name, "params_m": round(count_params(model) / 1e6, 3), "domains": {}, "per_class": {},
              "source_domain": meta.source, "targets": list(meta.targets)}
    per_image = {}
    for domain, split in domains:
        conf, per_image[domain] = evaluate_split(model, SegmentationSplit(data, domain, split, memo_bytes=0),
                                                 meta.num_classes, cfg.evaluate.batch_size, acc)
        miou, per_class = iou_from_confusion(conf)
        result["domains"][domain] = round(miou, 4)
        result["per_class"][domain] = {c: (None if v is None else round(v, 4)) for c, v in zip(meta.classes, per_class)}
        log.info("%s %s/%s: mIoU %.2f", name, domain, split, miou)
    result["avg"] = round(float(np.mean([result["domains"][t] for t in meta.targets])), 4)
    result["source"] = result["domains"].get(meta.source)
    result["provenance"] = provenance.summary()  # the code and machine behind the numbers (gkd.provenance)
    if acc.is_main_process:
        io.write_json(out, result)
        if per_image_out is not None:
            with io.atomic_path(per_image_out) as tmp:
                with open(tmp, "wb") as fh:
                    np.savez_compressed(fh, **per_image)
    return result


def main(argv=None) -> None:
    p = common.parser(__doc__.splitlines()[0], selectors=("benchmark",))
    p.input("--model", required=True, type=Path)
    p.input("--data", required=True, type=Path)
    p.output("--out", required=True, type=Path, help="metrics JSON")
    p.add_argument("--name", required=True, help="row name (e.g. the method)")
    p.output("--per-image", type=Path, default=None,
                   help="npz of per-image true-positive / ground-truth / predicted pixel counts per class and domain")
    args = p.parse_args(argv)
    cfg = common.setup(args, READS, ("benchmark",))
    run(cfg, args.model, args.data, args.out, args.name, args.per_image)


if __name__ == "__main__":
    common.run_main(main)
