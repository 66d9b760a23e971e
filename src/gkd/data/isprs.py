"""ISPRS Potsdam (RGB, IRRG) and Vaihingen (IRRG) in the mmseg-converted patch layout GKD reads.

``potsdam/RGB/{img_dir,ann_dir}/{train,val}/<i>_<j>_<x0>_<y0>_<x1>_<y1>.png`` (likewise
``potsdam/IRRG`` and ``vaihingen/…/area<k>_<x0>_<y0>_<x1>_<y1>.png``): image and label patches share
their name. Converted labels are single-channel PNGs with values 0..6 (0 = eroded boundary / no
colour match), decoded with reduce_zero_label into the 6 classes 0..5 and 255. Colour-coded RGB
label patches (the official encoding of the raw tiles, e.g. cut without the converter, ``.png`` or
``.tif``) are decoded by colour in RGB order, exactly as the converter does after its BGR read.
IRRG images keep their IR-R-G channel order. A patch whose tile belongs to the other official split
is an error: it would leak training tiles into the evaluation.
"""
from __future__ import annotations

import logging
import re
from pathlib import Path
from typing import Optional

import numpy as np

from gkd.data import labelmaps as lm
from gkd.data.readers import DataError, Reader, Sample, decode_label, open_image, register_reader

log = logging.getLogger("gkd.data")

# Official tile splits (mmseg converters' `splits` dicts; every other tile is val).
POTSDAM_TRAIN_TILES = frozenset(
    "2_10 2_11 2_12 3_10 3_11 3_12 4_10 4_11 4_12 5_10 5_11 5_12 6_10 6_11 6_12 6_7 6_8 6_9 "
    "7_10 7_11 7_12 7_7 7_8 7_9".split())
POTSDAM_VAL_TILES = frozenset("5_15 6_15 6_13 3_13 4_14 6_14 5_14 2_13 4_15 2_14 5_13 4_13 3_14 7_13".split())
VAIHINGEN_TRAIN_TILES = frozenset(f"area{k}" for k in (1, 11, 13, 15, 17, 21, 23, 26, 28, 3, 30, 32, 34, 37, 5, 7))
VAIHINGEN_VAL_TILES = frozenset(
    f"area{k}" for k in (6, 24, 35, 16, 14, 22, 10, 4, 2, 20, 8, 31, 33, 27, 38, 12, 29))

_POTSDAM_PATCH = re.compile(r"^(\d+_\d+)_\d+_\d+_\d+_\d+$")
_VAIHINGEN_PATCH = re.compile(r"^(area\d+)_\d+_\d+_\d+_\d+$")


class ISPRS(Reader):
    classes = lm.ISPRS_CLASSES
    palette = lm.ISPRS_PALETTE
    image_suffixes = (".png", ".tif")
    label_suffixes = (".png", ".tif")
    train_tiles: frozenset
    val_tiles: frozenset
    patch_pattern: re.Pattern

    def dirs(self, root: Path, split: str) -> tuple[Path, Path]:
        return root / "img_dir" / split, root / "ann_dir" / split

    def label_encoding(self, path: Path) -> lm.Encoding:
        return lm.ISPRS_VALUES

    def tile_of(self, stem: str) -> Optional[str]:
        """The tile a patch was cut from (``2_10`` / ``area1``), or None for an unexpected name."""
        m = self.patch_pattern.match(stem)
        return m.group(1) if m else None

    def official_split(self, tile: str) -> Optional[str]:
        return "train" if tile in self.train_tiles else "val" if tile in self.val_tiles else None

    def check_split(self, split: str, samples: list[Sample]) -> None:
        unknown = []
        for s in samples:
            tile = self.tile_of(self._strip(s.image.name))
            home = None if tile is None else self.official_split(tile)
            if home is None:
                unknown.append(s.image.name)
            elif home != split:
                raise DataError(f"{s.image}: a patch of tile {tile} in the {split} split, but the official "
                                f"{self.name} split puts that tile in {home}")
        if unknown:
            log.warning("%s %s: %d patches not named after an official tile (e.g. %s); their split membership "
                        "cannot be checked", self.name, split, len(unknown), unknown[0])

    def read_label(self, path: Path) -> np.ndarray:
        path = Path(path)
        im = open_image(path)
        if im.mode in ("RGB", "RGBA"):
            return lm.lookup(lm.REDUCE_ZERO_LABEL, lm.isprs_colours_to_values(np.asarray(im.convert("RGB"))))
        if im.mode not in ("L", "P"):
            raise DataError(f"{path}: expected a single-channel label with values 0..6 or an RGB colour-coded "
                            f"ISPRS label, got Pillow mode {im.mode}")
        return decode_label(path, lm.ISPRS_VALUES, np.asarray(im))


class Potsdam(ISPRS):
    train_tiles, val_tiles = POTSDAM_TRAIN_TILES, POTSDAM_VAL_TILES
    patch_pattern = _POTSDAM_PATCH
    expected_counts = {"train": 3456, "val": 2016}


@register_reader
class PotsdamRGB(Potsdam):
    name = "potsdam_rgb"
    folder = "potsdam/RGB"
    layout_hint = ("potsdam/RGB/img_dir/<split>/<i>_<j>_<x0>_<y0>_<x1>_<y1>.png with "
                   "potsdam/RGB/ann_dir/<split>/<same name>")


@register_reader
class PotsdamIRRG(Potsdam):
    name = "potsdam_irrg"
    folder = "potsdam/IRRG"
    layout_hint = ("potsdam/IRRG/img_dir/<split>/<i>_<j>_<x0>_<y0>_<x1>_<y1>.png with "
                   "potsdam/IRRG/ann_dir/<split>/<same name>")


@register_reader
class VaihingenIRRG(ISPRS):
    name = "vaihingen_irrg"
    folder = "vaihingen"
    train_tiles, val_tiles = VAIHINGEN_TRAIN_TILES, VAIHINGEN_VAL_TILES
    patch_pattern = _VAIHINGEN_PATCH
    expected_counts = {"train": 344, "val": 398}
    layout_hint = "vaihingen/img_dir/<split>/area<k>_<x0>_<y0>_<x1>_<y1>.png with vaihingen/ann_dir/<split>/<same name>"
