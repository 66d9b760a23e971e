"""Agreement of a student's segmenter with the teacher's on held-out images that carry no label.

The teacher's segmenter (the Teacher row: frozen teacher + decoder trained on source labels) is the robust
model GKD distils. On the held-out ``generic`` images (appearances the source never shows, none of them a
target's) its arg-max is the reference, and a student segmenter's agreement is the mIoU of its arg-max scored
against that reference as if it were ground truth. No label and no target image is read, so the quantity may
stand beside the stage-1 fidelity checks (issue 21's criterion 4; ``benchmarks/teacher_agreement.py`` measured
how it ranks stage-1 runs by their target Avg before it was put here).
"""
from __future__ import annotations

import logging
from pathlib import Path

import torch

from gkd.data.prepared import SegmentationSplit, read_meta, to_float
from gkd.errors import ConfigError
from gkd.features import CenterCrop
from gkd.metrics import confusion, iou_from_confusion
from gkd.models.artifacts import load_segmenter

log = logging.getLogger(__name__)
DOMAIN = "generic"
COLUMN = "teacher_agreement"  # the column both reports write it in


def heldout(data: Path, domain: str = DOMAIN):
    """The held-out split of ``domain`` (``generic`` val, or the source's val) as centre crops, no labels."""
    meta = read_meta(data)
    split = "val"
    if split not in meta.splits.get(domain, {}):
        raise ConfigError(f"the prepared benchmark {str(data)!r} has no {domain}/{split} split to measure agreement "
                          f"on; it has {sorted(f'{d}/{s}' for d, ss in meta.splits.items() for s in ss)}")
    return CenterCrop(SegmentationSplit(data, domain, split, with_labels=False, memo_bytes=0), meta.image_size)


@torch.no_grad()
def predictions(model_dir: Path, dataset, batch_size: int = 50) -> torch.Tensor:
    """Arg-max class map of every image of ``dataset`` (N×H×W, uint8) by the segmenter in ``model_dir``."""
    model, _ = load_segmenter(model_dir)
    model.eval()
    out = []
    for start in range(0, len(dataset), batch_size):
        images = torch.stack([dataset[i][0] for i in range(start, min(start + batch_size, len(dataset)))])
        out.append(model.predict(to_float(images)).argmax(1).to(torch.uint8))
    return torch.cat(out)


def score(pred: torch.Tensor, reference: torch.Tensor, num_classes: int) -> float:
    """mIoU (%) of ``pred`` against ``reference`` taken as the ground truth."""
    return iou_from_confusion(confusion(pred, reference, num_classes).numpy())[0]


class TeacherAgreement:
    """The teacher's predictions on a held-out split, computed once; ``of(model_dir)`` scores one student."""

    def __init__(self, teacher_dir: Path, data: Path, domain: str = DOMAIN, batch_size: int = 50):
        self.dataset = heldout(data, domain)
        self.num_classes = read_meta(data).num_classes
        self.batch_size = batch_size
        self.reference = predictions(teacher_dir, self.dataset, batch_size)

    def of(self, model_dir: Path) -> float:
        return round(score(predictions(model_dir, self.dataset, self.batch_size), self.reference, self.num_classes), 4)


def checks(teacher_dir: Path, data: Path) -> dict[str, TeacherAgreement]:
    """The check (held-out ``generic``) and its control (the source's val: the source fit, which does not rank
    the runs), keyed by the column a report writes each in; none where ``data`` holds out no generic images (the
    embedded benchmark does, a real one only from a ``generic_folder``). The reports find out here, not the DAG:
    ``dvc exp run -S benchmark=...`` switches the data under one dvc.yaml."""
    meta = read_meta(data)
    if "val" not in meta.splits.get(DOMAIN, {}):
        log.info("%s holds out no generic images: the teacher agreement is not measured", data)
        return {}
    return {COLUMN: TeacherAgreement(teacher_dir, data, DOMAIN),
            f"{COLUMN} ({meta.source} val, control)": TeacherAgreement(teacher_dir, data, meta.source)}
