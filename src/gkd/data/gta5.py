"""GTA5 (Playing for Data): ``images/00001.png`` paired with ``labels/00001.png``.

Labels are palettised PNGs whose indices are Cityscapes label ids (0..33), mapped with the
Cityscapes id→trainId table. GKD's converter also writes ``labels/00001_labelTrainIds.png``; that
file is read (as trainIds) only when the original label is absent. GKD trains on every file in
``images/`` (no split list), so the only split is "train" and GTA5 is never a target.
"""
from __future__ import annotations

from pathlib import Path

from gkd.data import labelmaps as lm
from gkd.data.readers import Reader, register_reader


@register_reader
class GTA5(Reader):
    name = "gta5"
    folder = "GTA5"  # GKD's config path data/GTA5 (Rein's README says data/gta)
    splits = ("train",)
    eval_split = None
    label_suffixes = (".png", "_labelTrainIds.png")
    expected_counts = {"train": 24966}
    layout_hint = "GTA5/images/NNNNN.png with GTA5/labels/NNNNN.png"

    def dirs(self, root: Path, split: str) -> tuple[Path, Path]:
        return root / "images", root / "labels"

    def label_encoding(self, path: Path) -> lm.Encoding:
        return lm.TRAIN_IDS if path.name.endswith("_labelTrainIds.png") else lm.CITYSCAPES_IDS
