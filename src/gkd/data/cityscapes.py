"""Cityscapes: ``leftImg8bit/<split>/<city>/<city>_<seq>_<frame>_leftImg8bit.png`` with
``gtFine/<split>/<city>/<city>_<seq>_<frame>_gtFine_labelIds.png``.

The official gtFine archive holds label ids (0..33), mapped with the id→trainId table; mapping them
gives the same result as GKD's converted ``_gtFine_labelTrainIds.png`` (both are rendered from the
same polygons), which is read as trainIds when the labelIds file is absent. Train (2,975) is the
Citys→ACDC source; val (500) is the evaluation target.
"""
from __future__ import annotations

from pathlib import Path

from gkd.data import labelmaps as lm
from gkd.data.readers import Reader, register_reader


@register_reader
class Cityscapes(Reader):
    name = "cityscapes"
    folder = "cityscapes"
    image_suffixes = ("_leftImg8bit.png",)
    label_suffixes = ("_gtFine_labelIds.png", "_gtFine_labelTrainIds.png")
    expected_counts = {"train": 2975, "val": 500}
    layout_hint = ("cityscapes/leftImg8bit/<split>/<city>/*_leftImg8bit.png with "
                   "cityscapes/gtFine/<split>/<city>/*_gtFine_labelIds.png")

    def dirs(self, root: Path, split: str) -> tuple[Path, Path]:
        return root / "leftImg8bit" / split, root / "gtFine" / split

    def label_encoding(self, path: Path) -> lm.Encoding:
        return lm.TRAIN_IDS if path.name.endswith("_labelTrainIds.png") else lm.CITYSCAPES_IDS
