"""`gkd convert-isprs`: the official ISPRS Potsdam / Vaihingen tiles → the patch layout the readers expect.

The readers (``gkd.data.isprs``) take the layout of mmseg's dataset converters
(``tools/dataset_converters/potsdam.py`` / ``vaihingen.py``, which GKD's data preparation uses), so this
module reproduces their output from the archives as ISPRS distributes them:

* **Input** (``--archives``): a folder holding the official zip files, their extracted tiles, or both
  (searched recursively; an extracted tile wins over the same tile inside a zip).

  - Potsdam: ``2_Ortho_RGB.zip`` (``top_potsdam_<i>_<j>_RGB.tif``), ``3_Ortho_IRRG.zip``
    (``top_potsdam_<i>_<j>_IRRG.tif``) and ``5_Labels_all_noBoundary.zip``
    (``top_potsdam_<i>_<j>_label_noBoundary.tif``); 38 tiles of 6000×6000 px.
  - Vaihingen: ``ISPRS_semantic_labeling_Vaihingen.zip`` (images ``top/top_mosaic_09cm_area<k>.tif``,
    IR-R-G false colour) and ``ISPRS_semantic_labeling_Vaihingen_ground_truth_eroded_COMPLETE.zip``
    (``top_mosaic_09cm_area<k>_noBoundary.tif``); 33 tiles of about 2000–2500 px a side. The image zip's
    ``gts_for_participants/`` holds full-boundary labels under the *image* names, which is why an image
    must sit in a folder named ``top``.

  Only the eroded-boundary (``noBoundary``) labels are used: they are the only labels both converters
  read (boundaries painted black become value 0, i.e. ignored after reduce_zero_label).
* **Cutting** (the converters' rule, defaults ``--clip-size 512 --stride 256``): along each axis of an
  ``extent``-pixel tile there are ``ceil((extent - clip) / stride) + 1`` candidate origins ``k·clip``
  (they step by the clip size; the stride only sets how many there are); a box that would cross the
  border is moved back to end at it, and boxes that land on the same place are one patch. The result is
  non-overlapping ``clip``×``clip`` patches plus a last row / column flush with the border: 12×12 = 144
  per 6000-px Potsdam tile, 3,456 train and 2,016 val patches in all.
* **Labels**: colour → value through ``labelmaps.isprs_colours_to_values`` (the converters' colour map read
  in RGB order): 1..6 for the six classes, 0 for black boundaries and any other colour; saved as 8-bit
  single-channel PNGs.
* **Output** (``--out``, the dataset's folder, i.e. ``<root>/potsdam`` or ``<root>/vaihingen``):
  ``{img_dir,ann_dir}/{train,val}/<tile>_<x0>_<y0>_<x1>_<y1>.png`` under each reader's folder
  (``RGB/`` and ``IRRG/`` for Potsdam, the folder itself for Vaihingen); image patches keep the tile's
  channel order. Tiles go to the official split (``isprs.*_TRAIN_TILES`` / ``*_VAL_TILES``); a tile on
  neither list (Vaihingen's ``area9`` ground truth) is skipped with a warning, as the converter drops it.
  The Potsdam label patches are written once per modality, identical.

Everything that can be checked without decoding pixels (arguments, ``--out``, which tiles the archives
hold) is checked before the first tile is read. Tiles are then processed one at a time, so memory is
bounded by one tile (peak RSS about 0.6 GB with a 6000-px Potsdam tile, measured; ~20 s a tile on one
core), and the result is written to a temporary sibling of ``--out`` that is renamed into place only
when every tile is done (``gkd.io``).
"""
from __future__ import annotations

import io as bytes_io
import logging
import re
import zipfile
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Callable, Optional

import numpy as np

from gkd import io
from gkd.config import choose
from gkd.data import isprs
from gkd.data import labelmaps as lm
from gkd.data.readers import MAX_IMAGE_PIXELS, get_reader
from gkd.errors import ConfigError, DataError

log = logging.getLogger("gkd.data")

CLIP_SIZE = 512   # mmseg converters' --clip_size default
STRIDE = 256      # mmseg converters' --stride_size default
SPLITS = ("train", "val")


@dataclass(frozen=True)
class TileKind:
    """One kind of official tile file: how it is named, and which archive ships it."""
    what: str                       # "RGB image", "eroded label" (for messages)
    template: str                   # file name with "{tile}" for the tile id
    archive: str                    # official archive that holds it
    folder: Optional[str] = None    # required name of the folder the file sits in

    def name(self, tile: str) -> str:
        return (f"{self.folder}/" if self.folder else "") + self.template.format(tile=tile)

    def match(self, tile_regex: str, name: str, folder: str) -> Optional[str]:
        """The tile id if ``folder/name`` is a file of this kind (extension case ignored)."""
        head, tail = self.template.split("{tile}")
        m = re.fullmatch(re.escape(head) + f"({tile_regex})" + re.escape(tail[:-4]) + r"\.tif", name, re.IGNORECASE)
        return m.group(1) if m and (self.folder is None or self.folder == folder) else None


@dataclass(frozen=True)
class Dataset:
    name: str
    tile_regex: str                 # a tile id as file names spell it
    placeholder: str                # the same, for messages
    images: dict[str, TileKind]     # reader name -> the tiles its image patches are cut from
    label: TileKind
    train_tiles: frozenset
    val_tiles: frozenset

    def split_of(self, tile: str) -> Optional[str]:
        return "train" if tile in self.train_tiles else "val" if tile in self.val_tiles else None

    def kinds(self) -> dict[str, TileKind]:
        return {**self.images, "label": self.label}

    def expected(self) -> str:
        return ", ".join(f"{k.archive} ({k.name(self.placeholder)})" for k in self.kinds().values())


DATASETS = {
    "potsdam": Dataset(
        "potsdam", r"\d+_\d+", "<i>_<j>",
        images={"potsdam_rgb": TileKind("RGB image", "top_potsdam_{tile}_RGB.tif", "2_Ortho_RGB.zip"),
                "potsdam_irrg": TileKind("IRRG image", "top_potsdam_{tile}_IRRG.tif", "3_Ortho_IRRG.zip")},
        label=TileKind("eroded label", "top_potsdam_{tile}_label_noBoundary.tif", "5_Labels_all_noBoundary.zip"),
        train_tiles=isprs.POTSDAM_TRAIN_TILES, val_tiles=isprs.POTSDAM_VAL_TILES),
    "vaihingen": Dataset(
        "vaihingen", r"area\d+", "area<k>",
        images={"vaihingen_irrg": TileKind("IRRG image", "top_mosaic_09cm_{tile}.tif",
                                           "ISPRS_semantic_labeling_Vaihingen.zip", folder="top")},
        label=TileKind("eroded label", "top_mosaic_09cm_{tile}_noBoundary.tif",
                       "ISPRS_semantic_labeling_Vaihingen_ground_truth_eroded_COMPLETE.zip"),
        train_tiles=isprs.VAIHINGEN_TRAIN_TILES, val_tiles=isprs.VAIHINGEN_VAL_TILES),
}


# --- cutting -------------------------------------------------------------------------------------------
def _origins(extent: int, clip: int, stride: int) -> list[int]:
    # Exact integer ceil: steps·stride + clip always reaches the border, so the converters' "one more if
    # it does not" never applies. Origins step by the clip size; one past the border moves back to it.
    steps = -(-(extent - clip) // stride)
    return sorted({min(k * clip, extent - clip) for k in range(steps + 1)})


def patch_boxes(height: int, width: int, clip: int = CLIP_SIZE,
                stride: int = STRIDE) -> list[tuple[int, int, int, int]]:
    """(x0, y0, x1, y1) of every patch of a height×width tile, row by row (see the module docstring)."""
    xs, ys = _origins(width, clip, stride), _origins(height, clip, stride)
    return [(x, y, x + clip, y + clip) for y in ys for x in xs]


def patch_name(tile: str, box: tuple[int, int, int, int]) -> str:
    return "_".join([tile, *map(str, box)]) + ".png"


# --- finding the tiles in the archives -----------------------------------------------------------------
@dataclass(frozen=True)
class TileFile:
    """A tile either on disk or inside a zip (read whole into memory: tiles are ~0.1 GB, and a TIFF read
    straight from a deflated member would re-decompress on every backward seek)."""
    path: Path
    member: Optional[str] = None

    def __str__(self) -> str:
        return f"{self.path}:{self.member}" if self.member else str(self.path)

    def read(self) -> np.ndarray:
        """H×W×3 uint8 in the file's channel order (RGB, IR-R-G or the label colours)."""
        from PIL import Image
        Image.MAX_IMAGE_PIXELS = MAX_IMAGE_PIXELS
        try:
            if self.member:
                with zipfile.ZipFile(self.path) as zf:
                    source = bytes_io.BytesIO(zf.read(self.member))
            else:
                source = self.path
            with Image.open(source) as im:
                im.load()
                # what the converters' colour imread gives: alpha dropped, grey / palette expanded
                return np.asarray(im if im.mode == "RGB" else im.convert("RGB"), dtype=np.uint8)
        except Exception as err:  # noqa: BLE001 - zipfile and Pillow raise many types for bad files
            raise DataError(f"{self}: unreadable tile ({type(err).__name__}: {err})") from None


@dataclass
class TileIndex:
    found: dict[tuple[str, str], TileFile]   # (kind key, tile id) -> file
    unused: list[str]                        # .tif files that match no kind (for the error hint)
    nested: list[str]                        # zips inside zips (not read; the hint says extract them)


def _match(dataset: Dataset, name: str, folder: str) -> Optional[tuple[str, str]]:
    for key, kind in dataset.kinds().items():
        tile = kind.match(dataset.tile_regex, name, folder)
        if tile is not None:
            return key, tile
    return None


def index_archives(dataset: Dataset, archives: Path) -> TileIndex:
    """Every tile file of ``dataset`` under ``archives`` (zips are listed, not extracted)."""
    index = TileIndex({}, [], [])
    for path in sorted(archives.rglob("*")):
        if not path.is_file():
            continue
        if path.suffix.lower() == ".zip":
            try:
                with zipfile.ZipFile(path) as zf:
                    members = [m for m in zf.namelist() if not m.endswith("/")]
            except (zipfile.BadZipFile, OSError) as err:
                raise DataError(f"{path}: not a readable zip archive ({err}); re-download it or remove it "
                                f"from {archives}") from None
            for member in members:
                p = PurePosixPath(member)
                if p.suffix.lower() == ".zip":
                    index.nested.append(f"{path}:{member}")
                elif p.suffix.lower() == ".tif":
                    _add(index, dataset, p.name, p.parent.name, TileFile(path, member))
        elif path.suffix.lower() == ".tif":
            _add(index, dataset, path.name, path.parent.name, TileFile(path))
    return index


def _add(index: TileIndex, dataset: Dataset, name: str, folder: str, file: TileFile) -> None:
    key = _match(dataset, name, folder)
    if key is None:
        index.unused.append(str(file))
        return
    previous = index.found.get(key)
    is_loose = file.member is None
    if previous is not None:
        if (previous.member is None) == is_loose:  # two copies of one kind: which one is meant is unknowable
            raise DataError(f"{dataset.name} tile {key[1]} ({dataset.kinds()[key[0]].what}) found twice: "
                            f"{previous} and {file}; keep one")
        if not is_loose:
            return  # the extracted copy of a zipped tile wins (no decompression)
    index.found[key] = file


def _check_complete(dataset: Dataset, archives: Path, index: TileIndex) -> list[str]:
    """The official tiles to convert (sorted); DataError listing every missing kind or tile."""
    kinds = dataset.kinds()
    absent = [k for k in kinds if not any(key == k for key, _ in index.found)]
    if absent:
        hints = []
        if index.unused:
            hints.append(f"found {len(index.unused)} other .tif files, e.g. {', '.join(index.unused[:3])}")
        if index.nested:
            hints.append(f"zips inside a zip are not read, extract them first: {', '.join(index.nested[:3])}")
        raise DataError(f"--archives {archives}: no {dataset.name} {' / '.join(kinds[k].what for k in absent)} "
                        f"tiles found; expected the official {dataset.expected()} (as zip files or extracted)"
                        + (f"; {'; '.join(hints)}" if hints else ""))
    tiles = {tile for _, tile in index.found}
    skipped = sorted(t for t in tiles if dataset.split_of(t) is None)
    if skipped:
        log.warning("%s: tiles %s are on neither official split list; skipped (as mmseg's converter drops "
                    "Vaihingen's area9 ground truth)", dataset.name, ", ".join(skipped))
    official = sorted(dataset.train_tiles | dataset.val_tiles)
    missing = [f"{kind.name(tile)} ({kind.archive})"
               for tile in official for key, kind in kinds.items() if (key, tile) not in index.found]
    if missing:
        raise DataError(f"--archives {archives}: {len(missing)} of the {len(official) * len(kinds)} official "
                        f"{dataset.name} tile files are missing: {', '.join(missing[:5])}"
                        f"{' …' if len(missing) > 5 else ''} (expected {dataset.expected()}; an incomplete "
                        f"download would change the benchmark)")
    return official


# --- converting ------------------------------------------------------------------------------------------
def _png(array: np.ndarray) -> bytes:
    from PIL import Image
    buf = bytes_io.BytesIO()
    # compress_level 1: cv2's PNG default, which the converters write with; the pixels are what matter
    Image.fromarray(np.ascontiguousarray(array)).save(buf, format="PNG", compress_level=1)
    return buf.getvalue()


def _reader_dirs(dataset: Dataset, root: Path) -> dict[str, Path]:
    """Each reader's folder inside the dataset's folder (its ``folder`` minus the dataset name)."""
    return {name: root / Path(get_reader(name).folder).relative_to(dataset.name) for name in dataset.images}


def check_out(out: Path) -> None:
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        raise ConfigError(f"--out {out} already exists and is not an empty folder; the converter never "
                          f"overwrites: give a new folder (or remove this one)")


def convert(dataset_name: str, archives: Path, out: Path, clip: int = CLIP_SIZE, stride: int = STRIDE,
            progress: Callable[[str], None] = print) -> dict[str, dict[str, int]]:
    """Cut ``dataset_name``'s official tiles under ``archives`` into ``out``; {reader: {split: patches}}."""
    dataset = DATASETS[choose("ISPRS dataset (--dataset)", dataset_name, DATASETS)]
    for key, value in (("--clip-size", clip), ("--stride", stride)):
        if not isinstance(value, int) or value < 1:
            raise ConfigError(f"{key} must be a positive integer, got {value!r}")
    archives, out = Path(archives).expanduser(), Path(out).expanduser()
    if not archives.is_dir():
        raise DataError(f"--archives {archives}: folder not found (expected a folder with the official "
                        f"{dataset.expected()})")
    check_out(out)
    index = index_archives(dataset, archives)
    tiles = _check_complete(dataset, archives, index)
    counts = {name: {split: 0 for split in SPLITS} for name in dataset.images}
    progress(f"{dataset.name}: {len(tiles)} tiles from {archives} → {out} (clip {clip}, stride {stride})")
    with io.atomic_path(out, is_dir=True) as tmp:
        dirs = _reader_dirs(dataset, tmp)
        for d in dirs.values():
            for sub in ("img_dir", "ann_dir"):
                for split in SPLITS:
                    (d / sub / split).mkdir(parents=True)
        for i, tile in enumerate(tiles, 1):
            split = dataset.split_of(tile)
            n = _convert_tile(dataset, tile, split, index.found, dirs, clip, stride)
            for name in dataset.images:
                counts[name][split] += n
            progress(f"[{i}/{len(tiles)}] {tile} ({split}): {n} patches")
    return counts


def _convert_tile(dataset: Dataset, tile: str, split: str, found: dict, dirs: dict[str, Path],
                  clip: int, stride: int) -> int:
    label_file = found[("label", tile)]
    colours = label_file.read()
    height, width = colours.shape[:2]
    if height < clip or width < clip:
        raise DataError(f"{label_file}: tile {tile} is {width}×{height} px, smaller than --clip-size {clip}")
    boxes = patch_boxes(height, width, clip, stride)
    for x0, y0, x1, y1 in boxes:  # colour lookup per patch: a whole-tile lookup would need ~1 GB of temporaries
        encoded = _png(lm.isprs_colours_to_values(colours[y0:y1, x0:x1]))
        for d in dirs.values():
            (d / "ann_dir" / split / patch_name(tile, (x0, y0, x1, y1))).write_bytes(encoded)
    del colours
    for name, d in dirs.items():
        image_file = found[(name, tile)]
        image = image_file.read()
        if image.shape[:2] != (height, width):
            raise DataError(f"{image_file}: {image.shape[1]}×{image.shape[0]} px, but its label {label_file} "
                            f"is {width}×{height} px")
        for box in boxes:
            x0, y0, x1, y1 = box
            (d / "img_dir" / split / patch_name(tile, box)).write_bytes(_png(image[y0:y1, x0:x1]))
    return len(boxes)


def params_hint(dataset_name: str, out: Path) -> str:
    """What to put in params.yaml so the benchmark reads the converted folder."""
    dataset = DATASETS[dataset_name]
    entries = ", ".join(f"{name}: {d}" for name, d in _reader_dirs(dataset, Path(out).resolve()).items())
    return f"params.yaml: `datasets: {{{entries}}}` (or a benchmark `root` holding {dataset.name}/)"
