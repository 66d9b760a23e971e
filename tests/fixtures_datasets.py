"""Tiny raw-dataset trees in the exact official layouts, with their expected mapped labels.

Each ``build_*`` writes a handful of small generated images under ``root/<reader folder>`` with the
real folder and file naming and the real label *encoding* (GTA palettised Cityscapes ids, Cityscapes
``*_gtFine_labelIds.png``, SYNTHIA 16-bit multi-channel PNGs, Mapillary v1.2 palette ids, ISPRS
converter values or colour codes, ...). The expected labels are computed here from tables transcribed
separately from the datasets' documentation and converters, independently of ``gkd.data.labelmaps``,
so the tests compare the readers against the documentation rather than against themselves.

Every builder returns ``(root, expected)`` with ``expected[reader name][split][image path relative
to root/<reader folder>] = H×W uint8 label`` (class indices, 255 = ignore).
"""
from __future__ import annotations

import json
import struct
import zlib
from pathlib import Path

import numpy as np
from PIL import Image

Expected = dict[str, dict[str, dict[str, np.ndarray]]]

# --- tables, transcribed from the datasets' documentation ---------------------------------------------
CITYSCAPES_ID2TRAIN = {7: 0, 8: 1, 11: 2, 12: 3, 13: 4, 17: 5, 19: 6, 20: 7, 21: 8, 22: 9, 23: 10, 24: 11,
                       25: 12, 26: 13, 27: 14, 28: 15, 31: 16, 32: 17, 33: 18}
SYNTHIA_ID2TRAIN = {3: 0, 4: 1, 2: 2, 21: 3, 5: 4, 7: 5, 15: 6, 9: 7, 6: 8, 16: 9, 1: 10, 10: 11, 17: 12, 8: 13,
                    18: 14, 19: 15, 20: 16, 12: 17, 11: 18}
MAPILLARY_ID2TRAIN = {2: 1, 3: 4, 6: 3, 7: 0, 8: 0, 9: 1, 10: 0, 11: 1, 13: 0, 14: 0, 15: 1, 17: 2, 19: 11,
                      20: 12, 21: 12, 22: 12, 23: 0, 24: 0, 27: 10, 29: 9, 30: 8, 44: 5, 45: 5, 46: 7, 47: 5,
                      48: 6, 49: 7, 50: 7, 52: 18, 54: 15, 55: 13, 57: 17, 58: 16, 61: 14}
ISPRS_RGB2TRAIN = {(255, 255, 255): 0, (0, 0, 255): 1, (0, 255, 255): 2, (0, 255, 0): 3, (255, 255, 0): 4,
                   (255, 0, 0): 5}  # any other colour (black eroded boundary included) -> 255
CITYSCAPES_COLOURS = [(128, 64, 128), (244, 35, 232), (70, 70, 70), (102, 102, 156), (190, 153, 153),
                      (153, 153, 153), (250, 170, 30), (220, 220, 0), (107, 142, 35), (152, 251, 152),
                      (70, 130, 180), (220, 20, 60), (255, 0, 0), (0, 0, 142), (0, 0, 70), (0, 60, 100),
                      (0, 80, 100), (0, 0, 230), (119, 11, 32)]
POTSDAM_TRAIN = ["2_10", "6_7"]
POTSDAM_VAL = ["2_13", "7_13"]
VAIHINGEN_TRAIN = ["area1", "area3"]
VAIHINGEN_VAL = ["area6", "area24"]
ACDC_CONDITIONS = ("fog", "night", "rain", "snow")


def mapped(ids: np.ndarray, table: dict[int, int]) -> np.ndarray:
    """``table[id]`` per pixel, 255 where the table has no entry (plain Python dict, no lookup arrays)."""
    out = np.full(ids.shape, 255, np.uint8)
    for src, dst in table.items():
        out[ids == src] = dst
    return out


# --- file writers ---------------------------------------------------------------------------------------
def _mkdir(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    return path


def save_l(path: Path, array: np.ndarray) -> None:
    Image.fromarray(np.asarray(array, np.uint8)).save(_mkdir(path))


def save_palette(path: Path, ids: np.ndarray, seed: int = 0) -> None:
    """A mode-"P" PNG whose *indices* are ``ids`` (the colours are arbitrary and must not matter)."""
    h, w = ids.shape
    im = Image.frombytes("P", (w, h), np.ascontiguousarray(ids, np.uint8).tobytes())
    im.putpalette(np.random.default_rng(seed).integers(0, 256, 768).astype(np.uint8).tobytes())
    im.save(_mkdir(path))


def save_rgb(path: Path, array: np.ndarray) -> None:
    Image.fromarray(np.asarray(array, np.uint8)).save(_mkdir(path))


def save_u16(path: Path, array: np.ndarray) -> None:
    h, w = array.shape
    Image.frombytes("I;16", (w, h), np.asarray(array, "<u2").tobytes()).save(_mkdir(path))


def write_png16(path: Path, array: np.ndarray, filters: tuple[int, ...] = (0, 1, 2, 3, 4)) -> None:
    """A 16-bit RGB(A)/grey PNG (what Pillow cannot write), cycling the row filters over ``filters``."""
    array = np.asarray(array, np.uint16)
    if array.ndim == 2:
        array = array[:, :, None]
    h, w, c = array.shape
    colour = {1: 0, 2: 4, 3: 2, 4: 6}[c]
    rows = array.astype(">u2").view(np.uint8).reshape(h, w * c * 2).astype(np.int32)
    bpp, prev, out = 2 * c, np.zeros(w * c * 2, np.int32), bytearray()
    for y in range(h):
        x, kind = rows[y], filters[y % len(filters)]
        left = np.concatenate([np.zeros(bpp, np.int32), x[:-bpp]])
        upleft = np.concatenate([np.zeros(bpp, np.int32), prev[:-bpp]])
        if kind == 0:
            pred = np.zeros_like(x)
        elif kind == 1:
            pred = left
        elif kind == 2:
            pred = prev
        elif kind == 3:
            pred = (left + prev) // 2
        else:
            p = left + prev - upleft
            pa, pb, pc = np.abs(p - left), np.abs(p - prev), np.abs(p - upleft)
            pred = np.where((pa <= pb) & (pa <= pc), left, np.where(pb <= pc, prev, upleft))
        out.append(kind)
        out += ((x - pred) & 255).astype(np.uint8).tobytes()
        prev = x

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    ihdr = struct.pack(">IIBBBBB", w, h, 16, colour, 0, 0, 0)
    _mkdir(path).write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(bytes(out)))
                             + chunk(b"IEND", b""))


def truncate(path: Path, keep: float = 0.5) -> None:
    """Cut a file short (a broken download)."""
    data = path.read_bytes()
    path.write_bytes(data[: int(len(data) * keep)])


# --- content ----------------------------------------------------------------------------------------------
def _blocky(rng: np.random.Generator, values: list[int], size: tuple[int, int], block: int) -> np.ndarray:
    """Random values per pixel (block=1) or per block×block tile (nicer images for end-to-end runs)."""
    w, h = size
    grid = rng.choice(np.asarray(values), size=(-(-h // block), -(-w // block)))
    return np.repeat(np.repeat(grid, block, 0), block, 1)[:h, :w]


def _picture(rng: np.random.Generator, label: np.ndarray, colours) -> np.ndarray:
    """An image whose colours follow the (mapped) label plus noise, so a model can learn something."""
    pal = np.full((256, 3), 128, np.int32)
    pal[: len(colours)] = np.asarray(colours)
    noise = rng.integers(-25, 26, (*label.shape, 3))
    return np.clip(pal[label] + noise, 0, 255).astype(np.uint8)


def _put(expected: Expected, reader: str, split: str, rel: str, label: np.ndarray) -> None:
    expected.setdefault(reader, {}).setdefault(split, {})[rel] = label


# --- builders ---------------------------------------------------------------------------------------------
def build_gta5(root: Path, n: int = 3, size: tuple[int, int] = (40, 24), block: int = 1, seed: int = 0):
    """GTA5/images/00001.png + GTA5/labels/00001.png (palette PNG of Cityscapes ids 0..33)."""
    rng, base, expected = np.random.default_rng(seed), Path(root) / "GTA5", {}
    for i in range(1, n + 1):
        ids = _blocky(rng, list(range(34)), size, block)
        label = mapped(ids, CITYSCAPES_ID2TRAIN)
        save_rgb(base / "images" / f"{i:05d}.png", _picture(rng, label, CITYSCAPES_COLOURS))
        save_palette(base / "labels" / f"{i:05d}.png", ids, seed=i)
        _put(expected, "gta5", "train", f"images/{i:05d}.png", label)
    return Path(root), expected


def build_synthia(root: Path, n: int = 3, size: tuple[int, int] = (40, 24), seed: int = 1):
    """RAND_CITYSCAPES/RGB/0000000.png + GT/LABELS/0000000.png (16-bit RGB: R = class id, G = instance)."""
    rng, expected = np.random.default_rng(seed), {}
    base = Path(root) / "SYNTHIA_RAND_CITYSCAPES" / "RAND_CITYSCAPES"
    w, h = size
    for i in range(n):
        ids = rng.integers(0, 23, (h, w))
        label = mapped(ids, SYNTHIA_ID2TRAIN)
        raw = np.stack([ids, rng.integers(0, 4000, (h, w)), rng.integers(0, 65536, (h, w))], -1)
        save_rgb(base / "RGB" / f"{i:07d}.png", _picture(rng, label, CITYSCAPES_COLOURS))
        write_png16(base / "GT" / "LABELS" / f"{i:07d}.png", raw)
        save_rgb(base / "GT" / "COLOR" / f"{i:07d}.png", _picture(rng, label, CITYSCAPES_COLOURS))
        _put(expected, "synthia", "train", f"RGB/{i:07d}.png", label)
    return Path(root), expected


def build_urbansyn(root: Path, n: int = 3, size: tuple[int, int] = (40, 20), seed: int = 2):
    """UrbanSyn/rgb/rgb_0001.png + ss/ss_0001.png (trainIds, 19 = unlabeled)."""
    rng, base, expected = np.random.default_rng(seed), Path(root) / "UrbanSyn", {}
    for i in range(1, n + 1):
        values = rng.choice(np.asarray(list(range(20)) + [255]), size=size[::-1])
        label = np.where(values >= 19, 255, values).astype(np.uint8)
        save_rgb(base / "rgb" / f"rgb_{i:04d}.png", _picture(rng, label, CITYSCAPES_COLOURS))
        save_l(base / "ss" / f"ss_{i:04d}.png", values)
        save_rgb(base / "ss_color" / f"ss_{i:04d}.png", _picture(rng, label, CITYSCAPES_COLOURS))
        _put(expected, "urbansyn", "train", f"rgb/rgb_{i:04d}.png", label)
    return Path(root), expected


_CITIES = {"train": ["aachen", "bochum", "zurich"], "val": ["frankfurt", "lindau", "munster"], "test": ["berlin"]}


def build_cityscapes(root: Path, counts: dict[str, int] | None = None, size: tuple[int, int] = (48, 24),
                     block: int = 1, seed: int = 3):
    """leftImg8bit/<split>/<city>/<city>_<seq>_<frame>_leftImg8bit.png + gtFine/... (_labelIds and siblings)."""
    counts = counts or {"train": 3, "val": 3, "test": 1}
    rng, base, expected = np.random.default_rng(seed), Path(root) / "cityscapes", {}
    for split, n in counts.items():
        cities = _CITIES[split]
        for i in range(n):
            city = cities[i % len(cities)]
            stem = f"{city}_{i // len(cities):06d}_{19 + 17 * i:06d}"
            ids = _blocky(rng, list(range(34)), size, block)
            label = mapped(ids, CITYSCAPES_ID2TRAIN)
            rel = f"leftImg8bit/{split}/{city}/{stem}_leftImg8bit.png"
            save_rgb(base / rel, _picture(rng, label, CITYSCAPES_COLOURS))
            gt = base / "gtFine" / split / city
            save_l(gt / f"{stem}_gtFine_labelIds.png", ids)
            save_u16(gt / f"{stem}_gtFine_instanceIds.png", ids * 1000)
            save_rgb(gt / f"{stem}_gtFine_color.png", _picture(rng, label, CITYSCAPES_COLOURS))
            (gt / f"{stem}_gtFine_polygons.json").write_text(json.dumps(
                {"imgHeight": size[1], "imgWidth": size[0], "objects": []}))
            if split != "test":
                _put(expected, "cityscapes", split, rel, label)
    return Path(root), expected


def build_bdd100k(root: Path, counts: dict[str, int] | None = None, size: tuple[int, int] = (48, 27),
                  block: int = 1, seed: int = 4):
    """images/10k/<split>/<hex>-<hex>.jpg + labels/sem_seg/masks/<split>/<same>.png (trainIds, 255)."""
    counts = counts or {"train": 2, "val": 3, "test": 1}
    rng, base, expected = np.random.default_rng(seed), Path(root) / "bdd100k", {}
    for split, n in counts.items():
        for i in range(n):
            stem = f"{rng.integers(16 ** 8):08x}-{rng.integers(16 ** 8):08x}"
            label = _blocky(rng, list(range(19)) + [255], size, block).astype(np.uint8)
            rel = f"images/10k/{split}/{stem}.jpg"
            save_rgb(base / rel, _picture(rng, label, CITYSCAPES_COLOURS))
            if split == "test":
                continue
            save_l(base / "labels" / "sem_seg" / "masks" / split / f"{stem}.png", label)
            save_rgb(base / "labels" / "sem_seg" / "colormaps" / split / f"{stem}.png",
                     _picture(rng, label, CITYSCAPES_COLOURS))
            _put(expected, "bdd100k", split, rel, label)
    for split in ("train", "val"):
        _mkdir(base / "labels" / "sem_seg" / "polygons" / f"sem_seg_{split}.json").write_text("[]")
    return Path(root), expected


def mapillary_config() -> dict:
    from gkd.data.labelmaps import MAPILLARY_V12_NAMES
    return {"labels": [{"name": n.lower().replace(" ", "-"), "readable": n, "color": [0, 0, 0],
                        "evaluate": n != "Unlabeled", "instances": False} for n in MAPILLARY_V12_NAMES]}


def build_mapillary(root: Path, counts: dict[str, int] | None = None, sizes=((40, 30), (36, 24), (48, 27)),
                    block: int = 1, seed: int = 5):
    """config.json + <training|validation>/images/<key>.jpg + …/labels/<key>.png (palette v1.2 ids)."""
    counts = counts or {"train": 2, "val": 3, "test": 1}
    rng, base, expected = np.random.default_rng(seed), Path(root) / "mapillary", {}
    _mkdir(base / "config.json").write_text(json.dumps(mapillary_config()))
    alphabet = np.array(list("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-"))
    folders = {"train": "training", "val": "validation", "test": "testing"}
    for split, n in counts.items():
        for i in range(n):
            key = "".join(rng.choice(alphabet, 22))
            size = sizes[i % len(sizes)]
            ids = _blocky(rng, list(range(66)), size, block)
            label = mapped(ids, MAPILLARY_ID2TRAIN)
            rel = f"{folders[split]}/images/{key}.jpg"
            save_rgb(base / rel, _picture(rng, label, CITYSCAPES_COLOURS))
            if split != "test":
                save_palette(base / folders[split] / "labels" / f"{key}.png", ids, seed=i)
                _put(expected, "mapillary", split, rel, label)
    return Path(root), expected


def build_acdc(root: Path, counts: dict[str, int] | None = None, size: tuple[int, int] = (48, 27),
               block: int = 1, seed: int = 6):
    """rgb_anon/<cond>/<split>/<seq>/<seq>_frame_<N>_rgb_anon.png + gt/<cond>/<split>/<seq>/..._gt_*.png."""
    counts = counts or {"train": 2, "val": 2, "test": 1}
    rng, base, expected = np.random.default_rng(seed), Path(root) / "acdc", {}
    for c, cond in enumerate(ACDC_CONDITIONS):
        for split, n in counts.items():
            for i in range(n):
                seq = f"GOPR{351 + 100 * c + i % 2:04d}"
                stem = f"{seq}_frame_{159 + 31 * i:06d}"
                ids = _blocky(rng, list(range(34)), size, block)
                train_ids = mapped(ids, CITYSCAPES_ID2TRAIN)
                rel = f"rgb_anon/{cond}/{split}/{seq}/{stem}_rgb_anon.png"
                save_rgb(base / rel, _picture(rng, train_ids, CITYSCAPES_COLOURS))
                save_rgb(base / f"rgb_anon/{cond}/{split}_ref/{seq}/{stem}_ref_anon.png",
                         _picture(rng, train_ids, CITYSCAPES_COLOURS))
                if split == "test":
                    continue
                gt = base / "gt" / cond / split / seq
                save_l(gt / f"{stem}_gt_labelTrainIds.png", train_ids)
                save_l(gt / f"{stem}_gt_labelIds.png", ids)
                save_rgb(gt / f"{stem}_gt_labelColor.png", _picture(rng, train_ids, CITYSCAPES_COLOURS))
                save_l(gt / f"{stem}_gt_invIds.png", (ids == 0).astype(np.uint8))
                _put(expected, f"acdc_{cond}", split, rel, train_ids)
    return Path(root), expected


def _patch_names(tiles: list[str], potsdam: bool) -> list[str]:
    boxes = [(0, 0, 512, 512), (5488, 512, 6000, 1024)] if potsdam else [(0, 0, 512, 512), (1376, 512, 1888, 1024)]
    return [f"{t}_{x0}_{y0}_{x1}_{y1}" for t in tiles for (x0, y0, x1, y1) in boxes]


def build_potsdam(root: Path, patch: int = 32, seed: int = 7):
    """potsdam/{RGB,IRRG}/{img_dir,ann_dir}/{train,val}/<i>_<j>_<x0>_<y0>_<x1>_<y1>.png (labels 0..6)."""
    rng, expected = np.random.default_rng(seed), {}
    for split, tiles in (("train", POTSDAM_TRAIN), ("val", POTSDAM_VAL)):
        for name in _patch_names(tiles, potsdam=True):
            values = rng.integers(0, 7, (patch, patch))
            label = np.where(values == 0, 255, values - 1).astype(np.uint8)
            rgb = _picture(rng, label, list(ISPRS_RGB2TRAIN))
            irrg = np.stack([rng.integers(0, 256, label.shape), rgb[..., 0], rgb[..., 1]], -1).astype(np.uint8)
            for modality, image in (("RGB", rgb), ("IRRG", irrg)):
                d = Path(root) / "potsdam" / modality
                save_rgb(d / "img_dir" / split / f"{name}.png", image)
                save_l(d / "ann_dir" / split / f"{name}.png", values)
                _put(expected, f"potsdam_{modality.lower()}", split, f"img_dir/{split}/{name}.png", label)
    return Path(root), expected


def build_vaihingen(root: Path, patch: int = 32, seed: int = 8):
    """vaihingen/{img_dir,ann_dir}/{train,val}/area<k>_<x0>_<y0>_<x1>_<y1>.png (IRRG images, labels 0..6)."""
    rng, base, expected = np.random.default_rng(seed), Path(root) / "vaihingen", {}
    for split, tiles in (("train", VAIHINGEN_TRAIN), ("val", VAIHINGEN_VAL)):
        for name in _patch_names(tiles, potsdam=False):
            values = rng.integers(0, 7, (patch, patch))
            label = np.where(values == 0, 255, values - 1).astype(np.uint8)
            irrg = _picture(rng, label, list(ISPRS_RGB2TRAIN))[..., [2, 0, 1]]  # any 3 channels: stands in for IR-R-G
            save_rgb(base / "img_dir" / split / f"{name}.png", irrg)
            save_l(base / "ann_dir" / split / f"{name}.png", values)
            _put(expected, "vaihingen_irrg", split, f"img_dir/{split}/{name}.png", label)
    return Path(root), expected


def build_isprs_colour(root: Path, patch: int = 24, seed: int = 9):
    """potsdam/RGB with *colour-coded* RGB label patches (the official tile encoding): TIF and PNG.

    Colours include the black eroded boundary and an off-palette colour, both ignored (255).
    """
    rng, base, expected = np.random.default_rng(seed), Path(root) / "potsdam" / "RGB", {}
    colours = list(ISPRS_RGB2TRAIN) + [(0, 0, 0), (12, 200, 77)]
    for k, (split, tile) in enumerate((("train", "2_10"), ("train", "3_11"), ("val", "7_13"))):
        name = f"{tile}_0_0_512_512"
        pick = rng.integers(0, len(colours), (patch, patch))
        rgb_label = np.asarray(colours, np.uint8)[pick]
        label = np.array([ISPRS_RGB2TRAIN.get(tuple(c), 255) for c in rgb_label.reshape(-1, 3).tolist()],
                         np.uint8).reshape(patch, patch)
        ext = ".tif" if k % 2 == 0 else ".png"
        save_rgb(base / "img_dir" / split / f"{name}{ext}", _picture(rng, label, list(ISPRS_RGB2TRAIN)))
        save_rgb(base / "ann_dir" / split / f"{name}{ext}", rgb_label)
        _put(expected, "potsdam_rgb", split, f"img_dir/{split}/{name}{ext}", label)
    return Path(root), expected


# A folder dataset (gkd.data.folder): classes, its label map (raw value -> class index) and how each domain
# looks (a brightness factor: "night" is darker), written in the layout docs/custom-dataset.md describes.
FOLDER_CLASSES = ["ground", "wall", "sky"]
FOLDER_LABEL_MAP = {0: 255, 10: 0, 20: 1, 30: 2}
FOLDER_COLOURS = [(120, 90, 60), (170, 170, 170), (90, 150, 230)]
FOLDER_DOMAINS = {"day": 1.0, "night": 0.45}


def build_folder_dataset(root: Path, counts: dict[str, int] | None = None, size: tuple[int, int] = (40, 32),
                         block: int = 8, seed: int = 10) -> tuple[Path, Expected]:
    """<root>/<domain>/images/<split>/<name>.png (every third one .jpg) + labels/<split>/<name>.png holding the
    raw values of FOLDER_LABEL_MAP, for every domain of FOLDER_DOMAINS."""
    counts = counts or {"train": 6, "val": 4}
    rng, expected = np.random.default_rng(seed), {}
    for domain, light in FOLDER_DOMAINS.items():
        for split, n in counts.items():
            for i in range(n):
                raw = _blocky(rng, list(FOLDER_LABEL_MAP), size, block).astype(np.uint8)
                label = mapped(raw, FOLDER_LABEL_MAP)
                picture = (_picture(rng, label, FOLDER_COLOURS) * light).astype(np.uint8)
                rel = f"images/{split}/{domain}_{i:03d}.{'jpg' if i % 3 == 2 else 'png'}"
                save_rgb(Path(root) / domain / rel, picture)
                save_l(Path(root) / domain / "labels" / split / f"{domain}_{i:03d}.png", raw)
                _put(expected, domain, split, rel, label)
    return Path(root), expected


BUILDERS = {"gta5": build_gta5, "synthia": build_synthia, "urbansyn": build_urbansyn,
            "cityscapes": build_cityscapes, "bdd100k": build_bdd100k, "mapillary": build_mapillary,
            "acdc": build_acdc, "potsdam": build_potsdam, "vaihingen": build_vaihingen}


def build_gta2city_fixture(root: Path) -> Path:
    """A small but complete raw tree for GTA5 → {cityscapes, bdd100k, mapillary}; returns the root.

    8 GTA5 training images (88×48) and 4 validation images per target (plus a few train/test files so
    the trees look like the releases), with block-structured labels and label-coloured images.
    """
    root = Path(root)
    build_gta5(root, n=8, size=(88, 48), block=8)
    build_cityscapes(root, counts={"train": 2, "val": 4, "test": 1}, size=(96, 48), block=8)
    build_bdd100k(root, counts={"train": 2, "val": 4, "test": 1}, size=(80, 45), block=8)
    build_mapillary(root, counts={"train": 2, "val": 4, "test": 1}, sizes=((80, 60), (72, 48), (96, 54)), block=8)
    return root
