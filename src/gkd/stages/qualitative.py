"""Stage `qualitative`: one image per domain with its ground truth and several methods' predictions."""
from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import torch

from gkd.data.prepared import SegmentationSplit, read_meta, to_float
from gkd.models.artifacts import load_segmenter
from gkd import plots
from gkd.stages import common
from gkd.tables import row_label

log = logging.getLogger(__name__)
READS = common.Reads(methods="labels")  # the columns' labels; everything else comes from the models


@torch.no_grad()
def run(cfg, data: Path, models: list[Path], out: Path, index: int) -> None:
    meta = read_meta(data)
    loaded = [load_segmenter(m) for m in models]
    names = [row_label(cfg, info["method"]) for _, info in loaded]
    rows = []
    has_val = "val" in meta.splits.get(meta.source, {})
    for domain, split in ([(meta.source, "val")] if has_val else []) + [(t, "test") for t in meta.targets]:
        ds = SegmentationSplit(data, domain, split)
        image, label, _ = ds[index % len(ds)]
        # at the label's resolution: real benchmarks keep evaluation labels at their original size
        preds = [model.predict(to_float(image[None]), size=tuple(label.shape))[0].argmax(0).numpy()
                 for model, _ in loaded]
        rows.append((domain, image.permute(1, 2, 0).numpy(), label.numpy(), preds))
    plots.qualitative(rows, names, np.array(meta.palette, np.uint8), out,
                      f"{cfg.teacher_name} → {cfg.student_name}: predictions on image {index} of each domain",
                      classes=meta.classes)


def main(argv=None) -> None:
    p = common.parser(__doc__.splitlines()[0], selectors=("benchmark", "student"))
    p.input("--data", required=True, type=Path)
    p.input("--models", nargs="+", required=True, type=Path, help="segmenter folders, one column each")
    p.output("--out", required=True, type=Path)
    p.add_argument("--index", type=int, default=0, help="which image of each domain's split")
    args = p.parse_args(argv)
    cfg = common.setup(args, READS, ("benchmark", "student"))
    run(cfg, args.data, args.models, args.out, args.index)


if __name__ == "__main__":
    common.run_main(main)
