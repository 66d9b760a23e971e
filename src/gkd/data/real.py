"""The `real` benchmark adapter: raw dataset folders → the records the prepare stage writes.

A benchmark names its source reader(s) and target readers (``gkd.data.readers``, or the domains of a
folder dataset: ``gkd.data.folder``); every dataset lives in the folder params' ``datasets:`` gives for
it, else at ``<bench.root>/<reader.folder>`` (a folder dataset's domain: at ``<its root>/<domain>``).
``select`` decides *which* samples form each split (for ``gkd check-data`` and the ``manifest`` stage
too); the adapter brings them to the working resolution:

- source ``train``: every training image resized so its short side is ``image_size`` (bilinear;
  labels nearest), then ``train_crops`` square crops evenly spaced along the long side (1 = centre,
  2 = both ends, 3 = ends + centre), named ``<sample>_c<k>``. Fixed crops instead of GKD's random
  multi-scale crops, because the prepared format stores images once; augmentation happens later;
- source ``val`` (only if the first source has a val split) and each target's ``test`` (its
  evaluation split, "val"), the paper's test protocol: the *image* is resized (bilinear, aspect
  kept, no crop) to its dataset's test scale (``EVAL_SCALES``); the *label keeps its original
  resolution*, so evaluation (``gkd.stages.evaluate``) scores at the resolution the dataset ships;
- ``generic`` ``train`` and ``val`` (only with ``generic_folder``): the unlabelled images of stage 1a (the
  paper: ImageNet's train folder), each resized to short side ``image_size`` and centre-cropped square,
  with a label of all 255 ("ignore": the prepared format stores one per image). Unlabelled, they are
  stage-1a data only: the presets trained here on labelled generic images are refused on real benchmarks
  (``gkd.config.check_pretraining_data``). See ``generic_selection`` for which images.

Caps (``train_images``, ``val_images``, ``target_images``; 0 = all) take the first N samples in
sorted order, so a capped benchmark is deterministic and needs no seed. Bad data raises DataError at
the first bad sample, or with ``skip_bad`` is skipped and listed in ``real_adapter.last_skipped``.
"""
from __future__ import annotations

import logging
import os
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable, Iterator, Optional, TypeVar

import numpy as np

from gkd.config import BenchmarkConfig, ConfigError, FolderDatasetConfig, choose
from gkd.data.adapters import register_adapter
from gkd.data.folder import FolderReader, folder_readers
from gkd.data.readers import READERS, DataError, Reader, Sample, _safe
from gkd.errors import GKDError

log = logging.getLogger("gkd.data")
Record = tuple[str, np.ndarray, np.ndarray]
IGNORE = 255  # the prepared format's "ignore" label (gkd.data.prepared.IGNORE; not imported: it pulls in torch)
T = TypeVar("T")
R = TypeVar("R")


@dataclass(frozen=True)
class EvalScale:
    """One dataset's test-time resize in GKD's mmseg configs, for their 512 crop.

    ``box`` (long, short): ``Resize(scale=box, keep_ratio=True)`` — the largest size that fits inside
    the box with the aspect kept (upscaling too). ``half_first``: GKD evaluates Mapillary on a copy
    halved in both axes (image bicubic, label nearest), and that half-size label is its ground truth.
    """
    box: tuple[int, int]
    half_first: bool = False


# From GKD's dataset configs (the "Protocol" of each dataset in its documentation): Cityscapes
# 2048×1024 → 1024×512; BDD100K 1280×720 unchanged; ACDC 1920×1080 → 960×540; Mapillary halved,
# then fitted into 1024×512; ISPRS 512-px patches unchanged. The box scales with ``image_size``
# (box × image_size / 512), so a smaller working crop keeps the paper's ratio of image to window; a
# result whose short side would fall below ``image_size`` (only images more elongated than the box,
# e.g. Mapillary panoramas) is raised to short side ``image_size``, so every image holds one window.
# A reader without an entry (none of the evaluated datasets) gets short side ``image_size``.
PAPER_CROP = 512
EVAL_SCALES: dict[str, EvalScale] = {
    "cityscapes": EvalScale((1024, 512)),
    "bdd100k": EvalScale((1280, 720)),
    "mapillary": EvalScale((1024, 512), half_first=True),
    **{f"acdc_{c}": EvalScale((960, 540)) for c in ("night", "snow", "fog", "rain")},
    **{name: EvalScale((512, 512)) for name in ("potsdam_rgb", "potsdam_irrg", "vaihingen_irrg")},
}


def eval_image_size(h: int, w: int, scale: Optional[EvalScale], crop: int) -> tuple[int, int]:
    """(height, width) an h×w evaluation image is resized to (after any ``half_first``), ``crop``
    being the working crop ``image_size``; mmseg's arithmetic: factor, then ``int(side·factor + 0.5)``."""
    floor = crop / min(h, w)  # short side = crop
    factor = floor
    if scale is not None:
        long_max, short_max = (side * crop / PAPER_CROP for side in scale.box)
        factor = max(floor, min(long_max / max(h, w), short_max / min(h, w)))
    if factor == floor:  # exactly short side = crop, whatever the rounding of the other side
        return (crop, max(crop, round(w * factor))) if h <= w else (max(crop, round(h * factor)), crop)
    return int(h * factor + 0.5), int(w * factor + 0.5)


def eval_pair(image: np.ndarray, label: np.ndarray, scale: Optional[EvalScale],
              crop: int) -> tuple[np.ndarray, np.ndarray]:
    """An evaluation pair under the paper's protocol: the image at its test scale, the label at its
    original resolution (half of it for ``half_first``), never cropped."""
    from PIL import Image
    if scale is not None and scale.half_first:
        h, w = label.shape
        image = np.asarray(Image.fromarray(image).resize((w // 2, h // 2), Image.BICUBIC))
        label = np.asarray(Image.fromarray(label).resize((w // 2, h // 2), Image.NEAREST))
    h, w = label.shape
    nh, nw = eval_image_size(h, w, scale, crop)
    if (nh, nw) != (h, w):
        image = np.asarray(Image.fromarray(image).resize((nw, nh), Image.BILINEAR))
    return image, label


def resize_short(image: np.ndarray, label: np.ndarray, size: int) -> tuple[np.ndarray, np.ndarray]:
    """Scale image (bilinear) and label (nearest) so that the shorter side is ``size``."""
    from PIL import Image
    h, w = label.shape
    if min(h, w) == size:
        return image, label
    scale = size / min(h, w)
    nh, nw = (size, max(size, round(w * scale))) if h <= w else (max(size, round(h * scale)), size)
    image = np.asarray(Image.fromarray(image).resize((nw, nh), Image.BILINEAR))
    label = np.asarray(Image.fromarray(label).resize((nw, nh), Image.NEAREST))
    return image, label


def crop_offsets(length: int, size: int, k: int) -> list[int]:
    """``k`` crop starts evenly spaced over ``length``: 1 → centre, 2 → both ends, 3 → ends + centre."""
    if k == 1:
        return [(length - size) // 2]
    return [round(i * (length - size) / (k - 1)) for i in range(k)]


def square_crops(image: np.ndarray, label: np.ndarray, size: int, k: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """``k`` size×size crops along the long side of a pair whose short side is ``size``."""
    h, w = label.shape
    if h <= w:
        return [(image[:, o:o + size], label[:, o:o + size]) for o in crop_offsets(w, size, k)]
    return [(image[o:o + size], label[o:o + size]) for o in crop_offsets(h, size, k)]


def load(reader: Reader, sample: Sample) -> tuple[np.ndarray, np.ndarray]:
    """Image and mapped label of one sample; DataError if they do not match in size. An unlabelled
    sample (``label`` None: the generic stream) gets a label of all ``IGNORE``."""
    if sample.label is None:
        image = reader.read_image(sample.image)
        return image, np.full(image.shape[:2], IGNORE, np.uint8)
    image, label = reader.read_image(sample.image), reader.read_label(sample.label)
    if image.shape[:2] != label.shape:
        raise DataError(f"{sample.label}: label is {label.shape[1]}×{label.shape[0]} but its image {sample.image} "
                        f"is {image.shape[1]}×{image.shape[0]}; expected equal sizes")
    return image, label


def _ordered_map(fn: Callable[[T], R], items: Iterable[T]) -> Iterator[R]:
    """``map(fn, items)`` on a few threads (decoding and resizing release the GIL), in order and
    with a bounded look-ahead so memory stays flat however long the split is."""
    workers = min(4, len(os.sched_getaffinity(0)))
    if workers <= 1:
        yield from map(fn, items)
        return
    with ThreadPoolExecutor(workers) as pool:
        pending: deque = deque()
        for item in items:
            pending.append(pool.submit(fn, item))
            if len(pending) >= 2 * workers:
                yield pending.popleft().result()
        while pending:
            yield pending.popleft().result()


def _cap_shares(total: int, n: int) -> list[Optional[int]]:
    """Split a train cap evenly over ``n`` sources (earlier sources take the remainder); None = all.

    A cap on the concatenation would otherwise take only the first source's images.
    """
    if total <= 0:
        return [None] * n
    base, extra = divmod(total, n)
    return [base + (i < extra) for i in range(n)]


def _check_readers(sources: list[Reader], targets: list[Reader]) -> None:
    """One class set per benchmark; sources need a train split, targets an evaluation split."""
    first = sources[0]
    for reader in sources + targets:
        if list(reader.classes) != list(first.classes):
            raise ConfigError(f"benchmark mixes class sets: {reader.name!r} has {len(reader.classes)} classes "
                              f"({', '.join(reader.classes[:3])}, ...) but {first.name!r} has {len(first.classes)}")
    for reader in sources:
        if "train" not in reader.splits:
            raise ConfigError(f"{reader.name!r} has no train split and cannot be a source")
    for reader in targets:
        if reader.eval_split is None:
            raise ConfigError(f"{reader.name!r} has no evaluation split (it is a training-only dataset) and "
                              f"cannot be a target")


def check_datasets(datasets: dict) -> None:
    """params' ``datasets:`` names known datasets, each with a folder, and folder datasets whose domains are
    not named like a known dataset (checked at plan time for every adapter, ``gkd.validate``, so a typo is
    reported before any work even where the entry would be unused; and by the real adapter)."""
    for name, folder in datasets.items():
        if isinstance(folder, FolderDatasetConfig):
            if name in READERS:
                raise ConfigError(f"datasets.{name}: the entry of built-in dataset {name!r} is its folder (a path); "
                                  f"a folder dataset needs a name of its own")
            clash = sorted(set(folder.domains) & set(READERS))
            if clash:
                raise ConfigError(f"datasets.{name}.domains: {', '.join(clash)} is the name of a built-in dataset; "
                                  f"give the domain folder another name")
            continue
        choose("dataset (a key of `datasets`, or a folder dataset: docs/custom-dataset.md)", name, READERS)
        if not isinstance(folder, str) or not folder:
            raise ConfigError(f"datasets.{name}: expected the dataset's folder as a path (or, for a dataset of your "
                              f"own, a folder dataset: docs/custom-dataset.md), got {folder!r}")


def find_reader(name: str, datasets: dict) -> Reader:
    """The reader of a dataset a benchmark names: a built-in one, or a domain of a folder dataset."""
    custom = folder_readers(datasets)
    if name in custom:
        return custom[name]
    if name not in READERS:
        raise ConfigError(f"unknown dataset reader {name!r}; valid choices: {', '.join(sorted({*READERS, *custom}))} "
                          f"(your own data: a folder dataset in `datasets:`, docs/custom-dataset.md)")
    return READERS[name]


def dataset_dir(reader: Reader, root: Optional[str], datasets: dict) -> Path:
    """Where a dataset lives: a folder dataset's domain at ``<its root>/<domain>``; a built-in dataset at its
    entry in params' ``datasets:``, else ``<benchmark root>/<its usual folder>``."""
    if isinstance(reader, FolderReader):
        return reader.home
    if reader.name in datasets:
        return Path(datasets[reader.name]).expanduser()
    if not root:
        raise ConfigError(f"dataset {reader.name!r}: no folder given; set `datasets: {{{reader.name}: /path/to/"
                          f"{reader.folder}}}` in params.yaml, or the benchmark's `root` (<root>/{reader.folder})")
    return Path(root) / reader.folder


def _listing(reader: Reader, folder: Path, split: str, cap: Optional[int], where: tuple[str, str],
             skip_bad: bool, skipped: list[dict]) -> list[tuple[Reader, Sample]]:
    """The first ``cap`` images of a split (all if None) in sorted order; unlabelled ones raise or,
    with ``skip_bad``, are recorded in ``skipped`` (so a cap counts them too: selection stays fixed)."""
    samples, missing = reader.scan(folder, split)
    entries = sorted([(s.image, s, None) for s in samples] + [(i, None, lab) for i, lab in missing],
                     key=lambda e: e[0])
    items = []
    for image, sample, expected in entries[:cap] if cap is not None else entries:
        if sample is not None:
            items.append((reader, sample))
            continue
        reason = f"no label; expected {expected}"
        if not skip_bad:
            raise DataError(f"{image}: {reason}")
        skipped.append(dict(domain=where[0], split=where[1], file=str(image), reason=reason))
    return items


@dataclass
class Listing:
    """One dataset split as ``select`` listed it (with ``skip_bad``, its problems recorded, not raised)."""
    reader: Reader
    split: str                        # the dataset's own name for it ("val" for a target's test part)
    folder: Optional[Path]            # None when the dataset's folder is not configured
    items: list[tuple[Reader, Sample]]
    missing: list[dict] = field(default_factory=list)  # images without a label, as skipped records of the part
    error: Optional[GKDError] = None  # a layout problem: the split could not be listed (``items`` empty)

    @property
    def where(self) -> str:
        return f"{self.reader.name}/{self.split}"


@dataclass
class Part:
    """One output split: which samples (from one listing, or one per source of a "+"-joined train
    split), and whether they are cropped (crops = 0: an evaluation split, kept whole under the paper's
    test protocol — ``eval_pair``)."""
    domain: str
    split: str
    listings: list[Listing]
    crops: int
    unlabelled: bool = False  # the generic stream: one centre crop per image, named as its sample

    @property
    def items(self) -> list[tuple[Reader, Sample]]:
        return [item for listing in self.listings for item in listing.items]


GENERIC = "generic"
GENERIC_SUFFIXES = (".jpg", ".jpeg", ".png")  # compared in lower case: ImageNet's files end in .JPEG


class ImageFolder(Reader):
    """The unlabelled images of a benchmark's ``generic_folder`` (not a registered dataset): only
    ``read_image`` is used; its samples have no label file (``Sample.label`` is None)."""
    name = GENERIC
    folder = ""
    splits = ("train", "val")
    eval_split = None
    layout_hint = "image files (.jpg, .jpeg, .png) in any subfolders, e.g. ImageNet's train/<wnid>/*.JPEG"


IMAGE_FOLDER = ImageFolder()


def list_image_folder(folder: Path) -> list[str]:
    """Every image file under ``folder`` (recursively; hidden files and folders left out) as sorted
    relative POSIX paths. Names only: a directory walk that opens no file, because ImageNet's train
    folder holds 1.28 M images; a folder that cannot be read is a DataError, not a silent gap.
    Symlinked subfolders are followed (class subsets are often made of links), each real folder once."""
    if not folder.is_dir():
        raise DataError(f"generic_folder {folder} not found (expected {ImageFolder.layout_hint})")

    def unreadable(err: OSError):
        raise DataError(f"generic_folder: cannot list {err.filename} ({err.strerror})")

    found, seen = [], set()
    for top, dirs, files in os.walk(folder, onerror=unreadable, followlinks=True):
        target = os.path.realpath(top)
        if target in seen:  # a link back up the tree (or a second link to one folder): walked already
            dirs[:] = []
            continue
        seen.add(target)
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))  # sorted: which link is walked is fixed
        rel = Path(top).relative_to(folder).as_posix()
        prefix = "" if rel == "." else rel + "/"
        found += [prefix + f for f in files if f.lower().endswith(GENERIC_SUFFIXES) and not f.startswith(".")]
    if not found:
        raise DataError(f"generic_folder {folder}: no images ending in {', '.join(GENERIC_SUFFIXES)} (any case) "
                        f"(expected {ImageFolder.layout_hint})")
    return sorted(found)


def spread(n: int, k: int) -> list[int]:
    """``k`` indices evenly spread over ``range(n)`` (the middle of ``k`` equal runs; distinct for k <= n)."""
    return [(2 * i + 1) * n // (2 * k) for i in range(k)]


def generic_selection(paths: list[str], train: int, val: int) -> tuple[list[str], list[str]]:
    """(train, val) images of the generic stream from the sorted listing: ``val`` images spread evenly
    over it, then ``train`` (0 = all) spread evenly over the rest — disjoint, deterministic, no seed.

    Spread rather than the first N (the other caps' rule): folders are usually sorted by class
    (ImageNet: 1,300 images per class folder), so the first N would hold a few classes only. The
    held-out images do not depend on the train cap.
    """
    if val >= len(paths):
        raise DataError(f"generic_folder holds {len(paths)} images: too few for generic_val_images {val} held out "
                        f"plus at least one training image")
    held = set(spread(len(paths), val))
    rest = [p for i, p in enumerate(paths) if i not in held]
    if train and train < len(rest):
        rest = [rest[i] for i in spread(len(rest), train)]
    elif train > len(rest):
        log.warning("generic_folder holds %d images besides the held-out ones, fewer than generic_images %d: "
                    "taking them all", len(rest), train)
    return rest, [paths[i] for i in sorted(held)]


def generic_samples(folder: Path, train: int, val: int) -> dict[str, list[Sample]]:
    """The unlabelled samples of ``generic/train`` and ``generic/val`` (val only if ``val`` > 0), named
    ``generic_<relative path>`` (folders joined by "_", suffix dropped), so a name does not depend on the caps."""
    def sample(rel: str) -> Sample:
        return Sample(_safe(f"{GENERIC}_{rel.rsplit('.', 1)[0].replace('/', '_')}"), folder / rel, None)

    train_paths, val_paths = generic_selection(list_image_folder(folder), train, val)
    out = {"train": [sample(p) for p in train_paths]}
    if val_paths:
        out["val"] = [sample(p) for p in val_paths]
    return out


def select(bench: BenchmarkConfig, datasets: dict[str, str], skip_bad: bool) -> list[Part]:
    """Which raw files a real benchmark reads: its output splits in the order `prepare` writes them —
    source ``train`` (caps shared over the sources), source ``val``, each target's ``test``, ``generic``
    ``train``/``val`` — each with its listings (folder from ``datasets``, else ``bench.root``; caps applied).

    The one selection behind ``real_adapter``, ``gkd check-data`` and the ``manifest`` stage. A config
    that cannot select anything (unknown dataset key, mixed class sets) raises ConfigError. Data problems
    raise at the first one, or with ``skip_bad`` are recorded in the listing they belong to (``missing``,
    ``error``) and every other split is still listed; an unlistable ``generic_folder`` is then one
    ``generic/train`` part holding just that error.
    """
    check_datasets(datasets)
    sources = [find_reader(name, datasets) for name in bench.source.split("+")]
    targets = [find_reader(name, datasets) for name in bench.targets]
    _check_readers(sources, targets)

    def listing(reader: Reader, split: str, cap: Optional[int], where: tuple[str, str]) -> Listing:
        folder, missing = None, []
        try:
            folder = dataset_dir(reader, bench.root, datasets)
            return Listing(reader, split, folder, _listing(reader, folder, split, cap, where, skip_bad, missing),
                           missing)
        except GKDError as err:
            if not skip_bad:
                raise
            return Listing(reader, split, folder, [], error=err)

    domain, first = bench.source.replace("+", "_"), sources[0]
    shares = _cap_shares(bench.train_images, len(sources))
    train = [listing(reader, "train", cap, (domain, "train")) for reader, cap in zip(sources, shares)]
    parts = [Part(domain, "train", train, getattr(bench, "train_crops", 1))]
    if "val" in first.splits:
        parts.append(Part(domain, "val", [listing(first, "val", bench.val_images or None, (domain, "val"))], 0))
    for reader in targets:
        test = listing(reader, reader.eval_split, bench.target_images or None, (reader.name, "test"))
        parts.append(Part(reader.name, "test", [test], 0))
    if bench.generic_folder:  # stage 1a's images; listed now so a bad folder stops before any writing
        folder = Path(bench.generic_folder).expanduser()
        try:
            generic = generic_samples(folder, bench.generic_images, bench.generic_val_images)
        except GKDError as err:
            if not skip_bad:
                raise
            generic, failed = {}, Listing(IMAGE_FOLDER, "train", folder, [], error=err)
            parts.append(Part(GENERIC, "train", [failed], 1, unlabelled=True))
        for split, samples in generic.items():
            listed = Listing(IMAGE_FOLDER, split, folder, [(IMAGE_FOLDER, s) for s in samples])
            parts.append(Part(GENERIC, split, [listed], 1, unlabelled=True))
    return parts


@register_adapter("real")  # GTA5, Cityscapes, BDD100K, Mapillary, ACDC, SYNTHIA, UrbanSyn, ISPRS
def real_adapter(bench: BenchmarkConfig, seed: int, datasets: dict[str, str]) -> tuple[dict, Iterator]:
    """(info, records) of a real benchmark; listing happens now, so layout errors come before any writing.

    ``seed`` is unused: every selection is the first N samples in sorted order (the generic stream's,
    spread evenly: ``generic_selection``). ``datasets`` maps a dataset to its folder (params'
    ``datasets:``); the others are looked for under ``bench.root``.
    """
    check_datasets(datasets)
    skipped: list[dict] = []
    real_adapter.last_skipped = skipped
    size = bench.image_size
    crops = getattr(bench, "train_crops", 1)
    if isinstance(crops, bool) or not isinstance(crops, int) or crops < 1:
        raise ConfigError(f"benchmark train_crops must be an integer >= 1, got {crops!r}")
    if size < 1:
        raise ConfigError(f"benchmark image_size must be >= 1, got {size}")
    parts = select(bench, datasets, bench.skip_bad)
    for listing in (listing for part in parts for listing in part.listings):
        if listing.error is not None:  # skip_bad skips samples, not folders: a layout problem stops prepare
            raise listing.error
        skipped.extend(listing.missing)
    first = parts[0].listings[0].reader

    def convert(item: tuple[Reader, Sample], part: Part) -> list[Record]:
        reader, sample = item
        if not part.crops:  # an evaluation split: the paper's test protocol, label not resized
            return [(sample.name, *eval_pair(*load(reader, sample), EVAL_SCALES.get(reader.name), size))]
        image, label = resize_short(*load(reader, sample), size)
        if part.unlabelled:
            return [(sample.name, *square_crops(image, label, size, 1)[0])]
        crops = square_crops(image, label, size, part.crops)
        return [(f"{sample.name}_c{k}", ci, cl) for k, (ci, cl) in enumerate(crops)]

    def check(item: tuple[Reader, Sample], part: Part) -> Optional[dict]:
        try:
            load(*item)
        except DataError as err:
            return dict(domain=part.domain, split=part.split, file=str(item[1].image), reason=str(err))
        return None

    def good_items(part: Part) -> list[tuple[Reader, Sample]]:
        """skip_bad: a full read of every sample first, so the split's count is exact up front."""
        problems = list(_ordered_map(lambda item: check(item, part), part.items))
        skipped.extend(p for p in problems if p is not None)
        mine = [s for s in skipped if (s["domain"], s["split"]) == (part.domain, part.split)]
        if mine:
            log.warning("%s/%s: skipped %d bad samples (listed in real_adapter.last_skipped); first: %s",
                        part.domain, part.split, len(mine), mine[0]["reason"])
        return [item for item, p in zip(part.items, problems) if p is None]

    def records() -> Iterator[tuple[str, str, int, Iterator[Record]]]:
        for part in parts:
            items = good_items(part) if bench.skip_bad else part.items
            if not items:
                raise DataError(f"{part.domain}/{part.split}: no usable samples left "
                                f"(see real_adapter.last_skipped)")
            count = len(items) * (part.crops or 1)
            recs = (rec for batch in _ordered_map(lambda item, p=part: convert(item, p), items) for rec in batch)
            yield part.domain, part.split, count, recs

    info = dict(classes=list(first.classes), palette=[list(c) for c in first.palette], source=parts[0].domain)
    return info, records()


real_adapter.last_skipped = []
