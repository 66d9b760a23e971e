"""Stage `evaluate`: a trained segmenter on the source val split and every target domain.

mIoU per domain from one confusion matrix per domain (never pooled across domains), per-class IoU,
and Avg = mean mIoU over the target domains. Written as ``metrics/…json`` for `dvc exp show`.
"""
from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from gkd import io
from gkd.data.prepared import SegmentationSplit, read_meta, to_float
from gkd.metrics import confusion, iou_from_confusion
from gkd.models.artifacts import count_params, load_segmenter
from gkd.stages import common

log = logging.getLogger("gkd.evaluate")


@torch.no_grad()
def evaluate_split(model, dataset, num_classes: int, batch_size: int, acc) -> np.ndarray:
    # Each rank takes every world-th image (no padding duplicates); confusion matrices are summed.
    # Images of another size than the model's input (real benchmarks) go one by one, through windows.
    shard = torch.utils.data.Subset(dataset, range(acc.process_index, len(dataset), acc.num_processes))
    first = dataset[0][0].shape[-2:]
    square = tuple(first) == (model.input_size, model.input_size)
    loader = torch.utils.data.DataLoader(shard, batch_size=batch_size if square else 1, shuffle=False)
    conf = torch.zeros(num_classes, num_classes, dtype=torch.long, device=acc.device)
    for images, labels, _ in tqdm(loader, desc="eval", disable=not acc.is_main_process, leave=False, mininterval=5):
        pred = model.predict(to_float(images.to(acc.device))).argmax(1)
        conf += confusion(pred, labels.to(acc.device), num_classes)
    return acc.reduce(conf, reduction="sum").cpu().numpy()


def run(cfg, model_dir: Path, data: Path, out: Path, name: str) -> dict:
    from gkd import train
    acc = train.make_accelerator(cfg.runtime)
    meta = read_meta(data)
    model, info = load_segmenter(model_dir)
    model = model.to(acc.device).eval()
    if info["classes"] != meta.classes:
        from gkd.config import ConfigError
        raise ConfigError(f"model {model_dir} predicts {info['classes']}, benchmark has {meta.classes}")
    has_val = "val" in meta.splits.get(meta.source, {})
    domains = ([(meta.source, "val")] if has_val else []) + [(t, "test") for t in meta.targets]
    result = {"name": name, "params_m": round(count_params(model) / 1e6, 3), "domains": {}, "per_class": {},
              "source_domain": meta.source, "targets": list(meta.targets)}
    for domain, split in domains:
        conf = evaluate_split(model, SegmentationSplit(data, domain, split, memo_bytes=0), meta.num_classes,
                              cfg.evaluate.batch_size, acc)
        miou, per_class = iou_from_confusion(conf)
        result["domains"][domain] = round(miou, 4)
        result["per_class"][domain] = {c: (None if v is None else round(v, 4)) for c, v in zip(meta.classes, per_class)}
        log.info("%s %s/%s: mIoU %.2f", name, domain, split, miou)
    result["avg"] = round(float(np.mean([result["domains"][t] for t in meta.targets])), 4)
    result["source"] = result["domains"].get(meta.source)
    if acc.is_main_process:
        io.write_json(out, result)
    return result


def main(argv=None) -> None:
    p = common.parser(__doc__.splitlines()[0], selectors=("benchmark",))
    p.add_argument("--model", required=True, type=Path)
    p.add_argument("--data", required=True, type=Path)
    p.add_argument("--out", required=True, type=Path, help="metrics JSON")
    p.add_argument("--name", required=True, help="row name (e.g. the method)")
    args = p.parse_args(argv)
    cfg = common.setup(args, ("benchmark",))
    run(cfg, args.model, args.data, args.out, args.name)


if __name__ == "__main__":
    common.run_main(main)
