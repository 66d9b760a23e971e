"""Mapillary Vistas v1.2: ``<training|validation>/images/<key>.jpg`` with ``…/labels/<key>.png``.

Labels are 8-bit palette PNGs whose indices are the 66 v1.2 class ids, mapped to Cityscapes trainIds
with the table GKD's ``mapillary2cityscape.py`` produces (``labelmaps.MAPILLARY_V12_TO_TRAINID``).
The v2.0 archive's ``<split>/v1.2/labels`` folder is accepted too. If the root's ``config.json``
(or ``config_v1.2.json``) is present its label names must be the v1.2 ones, because the table is
only right for that id order. GKD evaluates the validation set at half resolution (a BICUBIC JPEG
copy); we read the full-resolution originals, the adapter resizes them anyway.
"""
from __future__ import annotations

import json
from pathlib import Path

from gkd.data import labelmaps as lm
from gkd.data.readers import DataError, Reader, Sample, register_reader

_FOLDERS = {"train": "training", "val": "validation"}


@register_reader
class Mapillary(Reader):
    name = "mapillary"
    folder = "mapillary"
    image_suffixes = (".jpg",)
    label_suffixes = (".png",)
    expected_counts = {"train": 18000, "val": 2000}
    layout_hint = ("mapillary/<training|validation>/images/<key>.jpg with "
                   "mapillary/<training|validation>/labels/<key>.png")

    def dirs(self, root: Path, split: str) -> tuple[Path, Path]:
        base = root / _FOLDERS[split]
        labels = base / "labels"
        if not labels.is_dir() and (base / "v1.2" / "labels").is_dir():
            labels = base / "v1.2" / "labels"  # v2.0 archive layout
        return base / "images", labels

    def scan(self, root: Path, split: str) -> tuple[list[Sample], list[tuple[Path, Path]]]:
        check_config(Path(root))
        return super().scan(root, split)

    def label_encoding(self, path: Path) -> lm.Encoding:
        return lm.MAPILLARY_V12_IDS


def check_config(root: Path) -> None:
    """DataError if the root's label config is not v1.2 (the id→trainId table would be wrong)."""
    for name in ("config.json", "config_v1.2.json"):
        path = root / name
        if not path.is_file():
            continue
        try:
            readable = [entry["readable"] for entry in json.loads(path.read_text())["labels"]]
        except (ValueError, KeyError, TypeError) as err:
            raise DataError(f"{path}: expected a Mapillary config with labels[*].readable ({err})") from None
        if readable != lm.MAPILLARY_V12_NAMES:
            raise DataError(f"{path}: expected the 66 Mapillary Vistas v1.2 labels (Bird … Unlabeled), found "
                            f"{len(readable)} labels starting {readable[:3]}; only v1.2 ids can be mapped")
        return
