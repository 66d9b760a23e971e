"""SYNTHIA-RAND-CITYSCAPES: ``RGB/0000000.png`` with ``GT/LABELS/0000000.png``.

The original labels are 16-bit multi-channel PNGs whose first (R) channel holds the SYNTHIA class
id (0..22), mapped to Cityscapes trainIds with DAFormer's table. Pillow cannot read them (it keeps
only the high byte of each 16-bit sample), which is why DAFormer uses ``cv2.imread(...,
IMREAD_UNCHANGED)[:, :, -1]`` (BGR order, so -1 is the file's first channel). We use OpenCV when it
is installed and otherwise a small pure-numpy PNG decoder (correct, but slower). DAFormer's
converted ``GT/LABELS/0000000_labelTrainIds.png`` is read as trainIds when the original is absent.
All images are training data (SYNTHIA is only ever a source).
"""
from __future__ import annotations

import logging
import struct
import zlib
from pathlib import Path

import numpy as np

from gkd.data import labelmaps as lm
from gkd.data.readers import DataError, Reader, decode_label, read_index_label, register_reader

log = logging.getLogger("gkd.data")
_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_CHANNELS = {0: 1, 2: 3, 4: 2, 6: 4}  # PNG colour type -> samples per pixel (palette type 3 excluded)
_warned_slow = False


@register_reader
class Synthia(Reader):
    name = "synthia"
    folder = "SYNTHIA_RAND_CITYSCAPES/RAND_CITYSCAPES"
    splits = ("train",)
    eval_split = None
    label_suffixes = (".png", "_labelTrainIds.png")
    expected_counts = {"train": 9400}
    layout_hint = "RAND_CITYSCAPES/RGB/NNNNNNN.png with RAND_CITYSCAPES/GT/LABELS/NNNNNNN.png (16-bit)"

    def dirs(self, root: Path, split: str) -> tuple[Path, Path]:
        return root / "RGB", root / "GT" / "LABELS"

    def label_encoding(self, path: Path) -> lm.Encoding:
        return lm.TRAIN_IDS if path.name.endswith("_labelTrainIds.png") else lm.SYNTHIA_IDS

    def read_label(self, path: Path) -> np.ndarray:
        path = Path(path)
        encoding = self.label_encoding(path)
        if encoding is lm.TRAIN_IDS:
            return decode_label(path, encoding, read_index_label(path, encoding.description))
        return decode_label(path, encoding, first_channel(path))


def first_channel(path: Path) -> np.ndarray:
    """The first channel of a (16-bit, multi-channel) PNG as an H×W integer array, at full depth."""
    try:
        import cv2
    except ImportError:
        global _warned_slow
        if not _warned_slow:
            log.warning("OpenCV is not installed: decoding SYNTHIA's 16-bit labels with the slower pure-numpy "
                        "PNG decoder (pip install opencv-python-headless to speed this up)")
            _warned_slow = True
        return decode_png(path)[:, :, 0]
    array = cv2.imread(str(path), cv2.IMREAD_UNCHANGED)
    if array is None:
        raise DataError(f"{path}: unreadable label (OpenCV could not decode it; expected a SYNTHIA 16-bit PNG)")
    if array.ndim == 2:
        return array
    return array[:, :, 2] if array.shape[2] >= 3 else array[:, :, 0]  # OpenCV returns BGR(A): R is index 2


def decode_png(path: Path) -> np.ndarray:
    """A non-interlaced 8/16-bit grey/RGB(A) PNG as H×W×C (uint8 or uint16), channels in file order.

    Exists because Pillow truncates 16-bit colour PNGs to 8 bits; DataError for anything malformed.
    """
    data = Path(path).read_bytes() if Path(path).is_file() else None
    if data is None:
        raise DataError(f"{path}: file not found")
    if not data.startswith(_PNG_SIGNATURE):
        raise DataError(f"{path}: not a PNG file (expected a SYNTHIA 16-bit PNG label)")
    pos, header, idat = 8, None, []
    try:
        while pos < len(data):
            length, kind = struct.unpack(">I4s", data[pos:pos + 8])
            body = data[pos + 8:pos + 8 + length]
            if len(body) != length:
                raise ValueError("truncated chunk")
            if kind == b"IHDR":
                header = struct.unpack(">IIBBBBB", body)
            elif kind == b"IDAT":
                idat.append(body)
            elif kind == b"IEND":
                break
            pos += 12 + length
        else:
            raise ValueError("no IEND chunk (truncated file)")
        if header is None:
            raise ValueError("no IHDR chunk")
        width, height, depth, colour, _, _, interlace = header
        if depth not in (8, 16) or colour not in _CHANNELS or interlace:
            raise ValueError(f"unsupported PNG (bit depth {depth}, colour type {colour}, interlace {interlace})")
        channels, size = _CHANNELS[colour], depth // 8
        raw = _unfilter(zlib.decompress(b"".join(idat)), height, width * channels * size, channels * size)
    except (ValueError, struct.error, zlib.error) as err:
        raise DataError(f"{path}: unreadable PNG label ({err})") from None
    dtype = np.dtype(">u2") if size == 2 else np.dtype(np.uint8)
    return raw.view(dtype).reshape(height, width, channels).astype(dtype.newbyteorder("="))


def _unfilter(data: bytes, height: int, stride: int, bpp: int) -> np.ndarray:
    """Undo PNG's per-row filters (None, Sub, Up, Average, Paeth) → height×stride bytes."""
    rows = np.frombuffer(data, np.uint8)
    if rows.size != height * (stride + 1):
        raise ValueError(f"image data has {rows.size} bytes, expected {height * (stride + 1)}")
    rows = rows.reshape(height, stride + 1)
    out = np.empty((height, stride), np.uint8)
    prev = np.zeros(stride, np.uint8)
    for y in range(height):
        kind, line = int(rows[y, 0]), rows[y, 1:]
        if kind == 0:
            cur = line.copy()
        elif kind == 1:  # Sub: running sum along each byte lane
            cur = (np.cumsum(line.reshape(-1, bpp), axis=0, dtype=np.uint64) % 256).astype(np.uint8).ravel()
        elif kind == 2:
            cur = line + prev  # uint8 arithmetic wraps mod 256, as PNG wants
        elif kind in (3, 4):
            cur = _unfilter_sequential(line, prev, bpp, kind)
        else:
            raise ValueError(f"bad filter type {kind} in row {y}")
        out[y] = prev = cur
    return out


def _unfilter_sequential(line: np.ndarray, prev: np.ndarray, bpp: int, kind: int) -> np.ndarray:
    """Average (3) and Paeth (4) depend on the already-decoded left byte: decode byte by byte."""
    cur, up = bytearray(line.tobytes()), prev.tobytes()
    for i in range(len(cur)):
        a = cur[i - bpp] if i >= bpp else 0
        b = up[i]
        if kind == 3:
            pred = (a + b) >> 1
        else:
            c = up[i - bpp] if i >= bpp else 0
            p = a + b - c
            pa, pb, pc = abs(p - a), abs(p - b), abs(p - c)
            pred = a if pa <= pb and pa <= pc else (b if pb <= pc else c)
        cur[i] = (cur[i] + pred) & 255
    return np.frombuffer(bytes(cur), np.uint8)
