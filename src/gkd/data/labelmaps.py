"""Label encodings of the real datasets and their mapping to the benchmark class sets.

Every table here is transcribed from the datasets' own tooling and documentation: cityscapesScripts'
``labels.py`` (checked against the installed package by the tests), the GKD/DAFormer converters
(``gta.py``, ``synthia.py``, ``mapillary2cityscape.py``) and mmseg's ISPRS converters. Lookups are 256-entry ``uint8`` arrays so mapping a whole
label image is one fancy-indexing call, and every table comes with the set of values the on-disk
encoding may hold: a value outside it means a corrupt or foreign file, which readers report instead
of silently mapping it to "ignore".
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping

import numpy as np

IGNORE = 255

# --- Cityscapes 19 train classes (trainId order) and palette (RGB) ---------------------------------
CITYSCAPES_CLASSES: list[str] = [
    "road", "sidewalk", "building", "wall", "fence", "pole", "traffic light", "traffic sign", "vegetation",
    "terrain", "sky", "person", "rider", "car", "truck", "bus", "train", "motorcycle", "bicycle"]
CITYSCAPES_PALETTE: list[list[int]] = [
    [128, 64, 128], [244, 35, 232], [70, 70, 70], [102, 102, 156], [190, 153, 153], [153, 153, 153],
    [250, 170, 30], [220, 220, 0], [107, 142, 35], [152, 251, 152], [70, 130, 180], [220, 20, 60],
    [255, 0, 0], [0, 0, 142], [0, 0, 70], [0, 60, 100], [0, 80, 100], [0, 0, 230], [119, 11, 32]]

# Cityscapes label id -> trainId (cityscapesScripts labels.py; the same dict as GKD's gta.py).
CITYSCAPES_ID_TO_TRAINID_DICT: dict[int, int] = {
    7: 0, 8: 1, 11: 2, 12: 3, 13: 4, 17: 5, 19: 6, 20: 7, 21: 8, 22: 9, 23: 10, 24: 11, 25: 12, 26: 13,
    27: 14, 28: 15, 31: 16, 32: 17, 33: 18}
CITYSCAPES_NUM_IDS = 34  # ids 0..33 are drawn; -1 (license plate) never is

# SYNTHIA-RAND-CITYSCAPES class id -> trainId (DAFormer tools/convert_datasets/synthia.py).
SYNTHIA_ID_TO_TRAINID_DICT: dict[int, int] = {
    3: 0, 4: 1, 2: 2, 21: 3, 5: 4, 7: 5, 15: 6, 9: 7, 6: 8, 16: 9, 1: 10, 10: 11, 17: 12, 8: 13, 18: 14,
    19: 15, 20: 16, 12: 17, 11: 18}
SYNTHIA_NUM_IDS = 23  # 0 void .. 22 lanemarking

# --- Mapillary Vistas v1.2 -------------------------------------------------------------------------
# The 66 v1.2 `readable` names in id order (config.json; same order as mmseg MapillaryDataset).
MAPILLARY_V12_NAMES: list[str] = [
    "Bird", "Ground Animal", "Curb", "Fence", "Guard Rail", "Barrier", "Wall", "Bike Lane",
    "Crosswalk - Plain", "Curb Cut", "Parking", "Pedestrian Area", "Rail Track", "Road", "Service Lane",
    "Sidewalk", "Bridge", "Building", "Tunnel", "Person", "Bicyclist", "Motorcyclist", "Other Rider",
    "Lane Marking - Crosswalk", "Lane Marking - General", "Mountain", "Sand", "Sky", "Snow", "Terrain",
    "Vegetation", "Water", "Banner", "Bench", "Bike Rack", "Billboard", "Catch Basin", "CCTV Camera",
    "Fire Hydrant", "Junction Box", "Mailbox", "Manhole", "Phone Booth", "Pothole", "Street Light", "Pole",
    "Traffic Sign Frame", "Utility Pole", "Traffic Light", "Traffic Sign (Back)", "Traffic Sign (Front)",
    "Trash Can", "Bicycle", "Boat", "Bus", "Car", "Caravan", "Motorcycle", "On Rails", "Other Vehicle",
    "Trailer", "Truck", "Wheeled Slow", "Car Mount", "Ego Vehicle", "Unlabeled"]
# The resulting table (what mapillary2cityscape.py's name matching produces), compact; everything else -> 255.
MAPILLARY_V12_TO_TRAINID_DICT: dict[int, int] = {
    2: 1, 3: 4, 6: 3, 7: 0, 8: 0, 9: 1, 10: 0, 11: 1, 13: 0, 14: 0, 15: 1, 17: 2, 19: 11, 20: 12, 21: 12,
    22: 12, 23: 0, 24: 0, 27: 10, 29: 9, 30: 8, 44: 5, 45: 5, 46: 7, 47: 5, 48: 6, 49: 7, 50: 7, 52: 18,
    54: 15, 55: 13, 57: 17, 58: 16, 61: 14}


def mapillary_rule(readable: str) -> int:
    """GKD ``mapillary2cityscape.py --train_id``: one v1.2 `readable` name -> Cityscapes trainId.

    Kept as code (not only as the table above) so the table can be checked against the rule, and a
    ``config.json`` can be mapped the same way GKD maps it.
    """
    n = readable.lower().replace(" ", "").replace("-", "")
    names = [c.replace(" ", "") for c in CITYSCAPES_CLASSES]
    if n in names:
        return names.index(n)
    rules = ((("trafficsign", "front", "back"), 7), (("onrail",), 16), (("cyclist", "rider"), 12),
             (("pole", "streetlight"), 5), (("curb", "pedestrianarea"), 1),
             (("crosswalkplain", "parking", "bikelane", "servicelane", "lanemarking"), 0))
    for keys, train_id in rules:
        if any(k in n for k in keys):
            return train_id
    return IGNORE


# --- ISPRS Potsdam / Vaihingen -----------------------------------------------------------------------
ISPRS_CLASSES: list[str] = ["impervious_surface", "building", "low_vegetation", "tree", "car", "clutter"]
ISPRS_PALETTE: list[list[int]] = [  # RGB colours of the official colour-coded labels, in class order
    [255, 255, 255], [0, 0, 255], [0, 255, 255], [0, 255, 0], [255, 255, 0], [255, 0, 0]]
# mmseg potsdam.py / vaihingen.py `color_map` (index = value written). mmcv.imread returns BGR, so
# these triples are BGR: [255, 0, 0] is RGB blue (building) -> 2. Reversing each gives ISPRS_PALETTE.
ISPRS_CONVERTER_BGR_COLOR_MAP: list[list[int]] = [
    [0, 0, 0], [255, 255, 255], [255, 0, 0], [255, 255, 0], [0, 255, 0], [0, 255, 255], [0, 0, 255]]
ISPRS_NUM_VALUES = 7  # converter output 0 (boundary / unmatched) .. 6 (clutter)


def isprs_colours_to_values(rgb: np.ndarray) -> np.ndarray:
    """RGB colour-coded ISPRS label (H×W×3) -> the converter's values 0..6 (no colour match -> 0).

    Colours are compared in RGB order (the BGR list above, reversed per entry); the packed code
    ``r + 256 g + 65536 b`` makes it one lookup instead of seven masks.
    """
    rgb = np.asarray(rgb)
    if rgb.ndim != 3 or rgb.shape[2] < 3:
        raise ValueError(f"expected an H×W×3 colour label, got shape {rgb.shape}")
    code = rgb[..., 0].astype(np.int64) + 256 * rgb[..., 1].astype(np.int64) + 65536 * rgb[..., 2].astype(np.int64)
    out = np.zeros(code.shape, np.uint8)
    for value, bgr in enumerate(ISPRS_CONVERTER_BGR_COLOR_MAP):
        if value:
            r, g, b = bgr[::-1]
            out[code == r + 256 * g + 65536 * b] = value
    return out


# --- tables and encodings ----------------------------------------------------------------------------
def table_from(mapping: Mapping[int, int], default: int = IGNORE) -> np.ndarray:
    """A 256-entry uint8 lookup: ``mapping`` where given, ``default`` (ignore) elsewhere."""
    table = np.full(256, default, np.uint8)
    for src, dst in mapping.items():
        table[src] = dst
    return table


def lookup(table: np.ndarray, array: np.ndarray) -> np.ndarray:
    """Map every value of an integer label array through a 256-entry table (uint8 result).

    Values outside 0..255 cannot be looked up; they raise instead of wrapping around.
    """
    array = np.asarray(array)
    if array.size and (array.min() < 0 or array.max() >= len(table)):
        raise ValueError(f"label values {int(array.min())}..{int(array.max())} outside the table's 0..{len(table) - 1}")
    return table[array.astype(np.intp, copy=False)]


CITYSCAPES_ID_TO_TRAINID = table_from(CITYSCAPES_ID_TO_TRAINID_DICT)
SYNTHIA_ID_TO_TRAINID = table_from(SYNTHIA_ID_TO_TRAINID_DICT)
MAPILLARY_V12_TO_TRAINID = table_from(MAPILLARY_V12_TO_TRAINID_DICT)
IDENTITY_TRAINID = table_from({i: i for i in range(len(CITYSCAPES_CLASSES))})
# UrbanSyn stores trainIds with 19 = unlabeled (GKD urbansyn.py rewrites 19 -> 255 in place).
URBANSYN_TO_TRAINID = IDENTITY_TRAINID.copy()
# mmseg reduce_zero_label: 0 -> 255, v -> v-1 (ISPRS converter values 1..6 -> classes 0..5).
REDUCE_ZERO_LABEL = table_from({v: v - 1 for v in range(1, 256)})
REDUCE_ZERO_LABEL[255] = IGNORE


@dataclass(frozen=True)
class Encoding:
    """What the values of one kind of label file mean: which may occur and what they map to."""
    description: str      # used in error messages, e.g. "Cityscapes label ids 0..33"
    table: np.ndarray     # uint8[256] value -> class index / 255
    known: frozenset      # values the on-disk encoding may hold

    def unknown_values(self, array: np.ndarray) -> list[int]:
        """The distinct values of ``array`` that this encoding does not define (sorted)."""
        present = np.unique(np.asarray(array))
        return [int(v) for v in present if int(v) not in self.known]

    def decode(self, array: np.ndarray) -> np.ndarray:
        """Map values to class indices; ValueError naming the undefined values."""
        bad = self.unknown_values(array)
        if bad:
            raise ValueError(f"values {bad[:20]} are not {self.description}")
        return lookup(self.table, array)


_TRAIN_IDS = frozenset(range(len(CITYSCAPES_CLASSES))) | {IGNORE}
CITYSCAPES_IDS = Encoding("Cityscapes label ids 0..33", CITYSCAPES_ID_TO_TRAINID, frozenset(range(CITYSCAPES_NUM_IDS)))
TRAIN_IDS = Encoding("Cityscapes trainIds 0..18 or 255", IDENTITY_TRAINID, _TRAIN_IDS)
URBANSYN_IDS = Encoding("UrbanSyn trainIds 0..18, 19 = unlabeled (or 255 after GKD's rewrite)",
                        URBANSYN_TO_TRAINID, _TRAIN_IDS | {19})
SYNTHIA_IDS = Encoding("SYNTHIA class ids 0..22", SYNTHIA_ID_TO_TRAINID, frozenset(range(SYNTHIA_NUM_IDS)))
MAPILLARY_V12_IDS = Encoding("Mapillary Vistas v1.2 ids 0..65", MAPILLARY_V12_TO_TRAINID,
                             frozenset(range(len(MAPILLARY_V12_NAMES))))
ISPRS_VALUES = Encoding("ISPRS converter values 0..6 (reduce_zero_label)", REDUCE_ZERO_LABEL,
                        frozenset(range(ISPRS_NUM_VALUES)))
