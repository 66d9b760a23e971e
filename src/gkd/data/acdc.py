"""ACDC, one reader per adverse condition (fog, night, rain, snow).

``rgb_anon/<cond>/<split>/<seq>/<seq>_frame_<N>_rgb_anon.png`` pairs with
``gt/<cond>/<split>/<seq>/<seq>_frame_<N>_gt_labelTrainIds.png`` (trainIds, used by GKD as is);
when only ``_gt_labelIds.png`` is present it is mapped with the Cityscapes id→trainId table. The
reference folders (``train_ref`` …) are never read. Val is the DG target; test GT is withheld.
"""
from __future__ import annotations

from pathlib import Path

from gkd.data import labelmaps as lm
from gkd.data.readers import Reader, register_reader


class ACDC(Reader):
    condition: str
    folder = "acdc"
    image_suffixes = ("_rgb_anon.png",)
    label_suffixes = ("_gt_labelTrainIds.png", "_gt_labelIds.png")
    layout_hint = ("acdc/rgb_anon/<cond>/<split>/<seq>/*_rgb_anon.png with "
                   "acdc/gt/<cond>/<split>/<seq>/*_gt_labelTrainIds.png")

    def dirs(self, root: Path, split: str) -> tuple[Path, Path]:
        return root / "rgb_anon" / self.condition / split, root / "gt" / self.condition / split

    def label_encoding(self, path: Path) -> lm.Encoding:
        return lm.CITYSCAPES_IDS if path.name.endswith("_gt_labelIds.png") else lm.TRAIN_IDS


@register_reader
class ACDCNight(ACDC):
    name, condition = "acdc_night", "night"
    expected_counts = {"train": 400, "val": 106}


@register_reader
class ACDCSnow(ACDC):
    name, condition = "acdc_snow", "snow"
    expected_counts = {"train": 400, "val": 100}


@register_reader
class ACDCFog(ACDC):
    name, condition = "acdc_fog", "fog"
    expected_counts = {"train": 400, "val": 100}


@register_reader
class ACDCRain(ACDC):
    name, condition = "acdc_rain", "rain"
    expected_counts = {"train": 400, "val": 100}
