"""Readers of the real datasets' official on-disk layouts, and their registry.

A reader knows one dataset's folder layout (which image pairs with which label file), how to decode
its label encoding into the benchmark classes, and which splits are official. It never resizes or
crops: that is the benchmark adapter's job (``gkd.data.real``). Everything a reader cannot read
raises :class:`DataError`, whose message names the file and what was expected, so a broken download
is reported once and clearly instead of surfacing as a shape error deep inside training.

Pairing follows mmseg ``BaseSegDataset`` (what GKD uses): images are every file under the split's
image folder (recursively) ending in the image suffix; the label is the same relative path with the
image suffix replaced by a label suffix. Some datasets ship several label files per image (raw ids
and converted trainIds); ``label_suffixes`` lists them in order of preference.
"""
from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar, Optional

import numpy as np

from gkd.config import ConfigError, choose
from gkd.data import labelmaps as lm
from gkd.registry import Registry

log = logging.getLogger("gkd.data")

# Pillow refuses images above 2 × MAX_IMAGE_PIXELS (decompression-bomb guard) and warns above it.
# A 6000×6000 ISPRS Potsdam tile has 36 M pixels; this limit admits it (and large Mapillary frames)
# without warnings while keeping the guard. It is set where images are opened, not at import.
MAX_IMAGE_PIXELS = 100_000_000


class DataError(ConfigError):
    """A raw dataset file or folder that is missing or does not hold what its layout promises."""


@dataclass(frozen=True)
class Sample:
    name: str    # unique within a reader, filesystem-safe, stable (from the image's relative path)
    image: Path
    label: Path


def open_image(path: Path):
    """Open and fully decode an image with Pillow; DataError naming the file if that fails."""
    from PIL import Image
    Image.MAX_IMAGE_PIXELS = MAX_IMAGE_PIXELS
    try:
        im = Image.open(path)
        im.load()  # Image.open is lazy: truncated data only shows up here
    except FileNotFoundError:
        raise DataError(f"{path}: file not found") from None
    except Exception as err:  # noqa: BLE001 - Pillow raises many types for bad files
        raise DataError(f"{path}: unreadable image ({type(err).__name__}: {err})") from None
    return im


def read_rgb(path: Path) -> np.ndarray:
    """H×W×3 uint8 in the file's channel order (RGB, or IR-R-G for ISPRS IRRG patches)."""
    im = open_image(path)
    if im.mode != "RGB":
        try:
            im = im.convert("RGB")  # grey, palette, RGBA, CMYK JPEGs ...
        except (ValueError, OSError) as err:
            raise DataError(f"{path}: expected an RGB image, got Pillow mode {im.mode} ({err})") from None
    return np.asarray(im, dtype=np.uint8)


def read_index_label(path: Path, what: str) -> np.ndarray:
    """A single-channel label (8-bit grayscale or palette indices) as an H×W integer array.

    Palette PNGs (GTA5, Mapillary) store class ids as palette *indices*: Pillow returns the indices
    for mode "P", which is what we want (never convert them to colours).
    """
    im = open_image(path)
    if im.mode in ("L", "P"):
        return np.asarray(im)
    if im.mode in ("I;16", "I;16B", "I"):
        return np.asarray(im).astype(np.int64)
    raise DataError(f"{path}: expected a single-channel label image of {what}, got Pillow mode {im.mode}")


def decode_label(path: Path, encoding: lm.Encoding, array: np.ndarray) -> np.ndarray:
    """Map ``array`` through ``encoding``; DataError naming the file and the undefined values."""
    bad = encoding.unknown_values(array)
    if bad:
        raise DataError(f"{path}: label values {bad[:20]} outside the known encoding "
                        f"(expected {encoding.description})")
    return lm.lookup(encoding.table, array)


def _safe(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", text)


class Reader:
    """One dataset (or one ACDC condition / ISPRS modality) in its official layout."""
    name: ClassVar[str]
    folder: ClassVar[str]                       # default folder under a common raw-data root
    classes: ClassVar[list[str]] = lm.CITYSCAPES_CLASSES
    palette: ClassVar[list[list[int]]] = lm.CITYSCAPES_PALETTE
    splits: ClassVar[tuple[str, ...]] = ("train", "val")
    eval_split: ClassVar[Optional[str]] = "val"  # what a DG benchmark evaluates when it is a target
    image_suffixes: ClassVar[tuple[str, ...]] = (".png",)
    label_suffixes: ClassVar[tuple[str, ...]] = (".png",)  # first existing wins
    expected_counts: ClassVar[dict[str, int]] = {}         # split -> official size (checked, warned)
    layout_hint: ClassVar[str] = ""                         # shown in errors: what the folder should hold

    # -- layout -------------------------------------------------------------------------------------
    def dirs(self, root: Path, split: str) -> tuple[Path, Path]:
        """(image folder, label folder) of ``split``."""
        raise NotImplementedError

    def label_candidates(self, label_dir: Path, rel: str) -> list[Path]:
        """Label files that may belong to the image at ``rel`` (relative path, image suffix removed)."""
        return [label_dir / (rel + s) for s in self.label_suffixes]

    def label_encoding(self, path: Path) -> lm.Encoding:
        """The encoding of a label file (datasets with raw and converted labels decide by name)."""
        raise NotImplementedError

    def check_split(self, split: str, samples: list[Sample]) -> None:
        """Dataset-specific checks of a listed split (e.g. ISPRS tile membership); default none."""

    # -- listing ------------------------------------------------------------------------------------
    def scan(self, root: Path, split: str) -> tuple[list[Sample], list[tuple[Path, Path]]]:
        """Samples of ``split`` and the images without a label as (image, expected label) pairs.

        Missing root / split folders raise DataError. Unlabelled images are returned rather than
        raised so a caller that skips bad data can report them; :meth:`samples` raises on them.
        """
        choose(f"{self.name} split", split, self.splits)
        root = Path(root)
        if not root.is_dir():
            raise DataError(f"dataset root {root} not found for {self.name!r} (expected {self.layout_hint})")
        image_dir, label_dir = self.dirs(root, split)
        for d, kind in ((image_dir, "image"), (label_dir, "label")):
            if not d.is_dir():
                raise DataError(f"{self.name} {split}: {kind} folder {d} not found (expected {self.layout_hint})")
        images = sorted(p for p in image_dir.rglob("*") if p.name.endswith(self.image_suffixes) and p.is_file())
        if not images:
            raise DataError(f"{self.name} {split}: no images ending in {' or '.join(self.image_suffixes)} "
                            f"under {image_dir} (expected {self.layout_hint})")
        rels = [self._strip(p.relative_to(image_dir).as_posix()) for p in images]
        stems = [r.rsplit("/", 1)[-1] for r in rels]
        keys = stems if len(set(stems)) == len(stems) else [r.replace("/", "_") for r in rels]
        samples, missing = [], []
        for image, rel, key in zip(images, rels, keys):
            candidates = self.label_candidates(label_dir, rel)
            label = next((c for c in candidates if c.is_file()), None)
            if label is None:
                missing.append((image, candidates[0]))
            else:
                samples.append(Sample(_safe(f"{self.name}_{key}"), image, label))
        self.check_split(split, samples)
        self._check_count(split, len(images))
        return samples, missing

    def samples(self, root: Path, split: str) -> list[Sample]:
        """Sorted samples of ``split``; DataError for a missing root, split folder or label."""
        samples, missing = self.scan(root, split)
        if missing:
            image, label = missing[0]
            more = f" (and {len(missing) - 1} more images without labels)" if len(missing) > 1 else ""
            raise DataError(f"{image}: no label; expected {label}{more}")
        return samples

    def _strip(self, rel: str) -> str:
        for s in self.image_suffixes:
            if rel.endswith(s):
                return rel[: -len(s)]
        return rel

    def _check_count(self, split: str, n: int) -> None:
        expected = self.expected_counts.get(split)
        if expected is not None and n != expected:
            log.warning("%s %s: found %d images; the official release has %d (a commonly cited, "
                        "partly unverified figure) - continuing with what is there", self.name, split, n, expected)

    # -- decoding -----------------------------------------------------------------------------------
    def read_image(self, path: Path) -> np.ndarray:
        """H×W×3 uint8 (RGB; IRRG files keep their channel order)."""
        return read_rgb(Path(path))

    def read_label(self, path: Path) -> np.ndarray:
        """H×W uint8 class indices 0..K-1 or 255."""
        path = Path(path)
        encoding = self.label_encoding(path)
        return decode_label(path, encoding, read_index_label(path, encoding.description))


READERS = Registry("dataset reader")


def register_reader(cls: type[Reader]) -> type[Reader]:
    """Class decorator: register one instance of ``cls`` under ``cls.name``."""
    READERS.add(cls.name, cls())
    return cls


get_reader = READERS.lookup


# The dataset modules register themselves; import them here so the registry is complete.
from gkd.data import acdc, bdd100k, cityscapes, gta5, isprs, mapillary, synthia, urbansyn  # noqa: E402,F401
