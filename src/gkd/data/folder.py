"""Folder datasets: bring your own data without writing a reader (mmseg's ``CustomDataset`` idea).

A folder dataset is declared in params' ``datasets:`` (``gkd.config.FolderDatasetConfig``; see
docs/custom-dataset.md) as a root with one folder per domain, each in the layout

    <root>/<domain>/images/<split>/<name>.png | .jpg | .jpeg
    <root>/<domain>/labels/<split>/<name>.png          (the same relative path, suffix .png)

with the splits ``train`` (read when the domain is a source) and ``val`` (its validation when a source,
its test split when a target). Labels are single-channel PNGs (8-bit grey or palette indices) whose
values the dataset's ``label_map`` turns into class indices (without one, the values are the indices);
255 is "ignore". Every domain becomes a reader named after its folder, which a benchmark preset names as
``source`` or in ``targets`` like any built-in dataset. Unlike those, these readers are made from params,
so they are not in the registry: :func:`folder_readers` builds them for one config.
"""
from __future__ import annotations

import colorsys
from pathlib import Path

from gkd.config import FolderDatasetConfig
from gkd.data import labelmaps as lm
from gkd.data.readers import Reader

LAYOUT = "<root>/<domain>/images/<split>/*.png|jpg with <root>/<domain>/labels/<split>/<same name>.png"


def generated_palette(n: int) -> list[list[int]]:
    """``n`` distinct, fixed colours for the figures of a dataset that gives none (hues spaced by the golden
    ratio, so neighbouring classes differ); Cityscapes' own colours for its 19 classes."""
    if n == len(lm.CITYSCAPES_PALETTE):
        return [list(c) for c in lm.CITYSCAPES_PALETTE]
    colours = [colorsys.hsv_to_rgb((0.618034 * k) % 1.0, 0.65, 0.95 - 0.25 * (k % 2)) for k in range(n)]
    return [[round(255 * v) for v in c] for c in colours]


def encoding(spec: FolderDatasetConfig, name: str) -> lm.Encoding:
    """What the label values of a folder dataset mean: its ``label_map`` (or the identity), 255 ignored;
    any other value is reported as outside the map, never silently ignored."""
    mapping = spec.mapping()
    shown = ", ".join(f"{raw}->{index}" for raw, index in sorted(mapping.items()) if raw != lm.IGNORE)
    what = (f"datasets.{name}.label_map ({shown}; 255 ignored)" if spec.label_map else
            f"class indices 0..{len(spec.classes) - 1} of datasets.{name}.classes, or 255 (ignored)")
    return lm.Encoding(what, lm.table_from(mapping), frozenset(mapping))


class FolderReader(Reader):
    """One domain of a folder dataset; its folder is ``<root>/<domain>`` (``home``)."""
    splits = ("train", "val")
    eval_split = "val"
    image_suffixes = (".png", ".jpg", ".jpeg")
    label_suffixes = (".png",)

    def __init__(self, dataset: str, domain: str, spec: FolderDatasetConfig):
        self.name = domain
        self.folder = domain
        self.home = Path(spec.root).expanduser() / domain
        self.classes = list(spec.classes)
        self.palette = [list(c) for c in spec.palette] if spec.palette else generated_palette(len(spec.classes))
        self.encoding = encoding(spec, dataset)
        self.layout_hint = f"{LAYOUT}, <root> = {spec.root} (datasets.{dataset})"

    def dirs(self, root: Path, split: str) -> tuple[Path, Path]:
        return root / "images" / split, root / "labels" / split

    def label_encoding(self, path: Path) -> lm.Encoding:
        return self.encoding


def folder_readers(datasets: dict) -> dict[str, FolderReader]:
    """A reader per domain of every folder dataset in params' ``datasets:`` (the other entries are folders of
    built-in datasets), by domain name."""
    return {domain: FolderReader(name, domain, spec) for name, spec in datasets.items()
            if isinstance(spec, FolderDatasetConfig) for domain in spec.domains}
