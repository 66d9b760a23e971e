"""BDD100K semantic segmentation (10K subset): ``images/10k/<split>/<name>.jpg`` with
``labels/sem_seg/masks/<split>/<name>.png``.

The masks already hold the 19 Cityscapes trainIds (same class order) and 255 = unknown, so the
mapping is the identity. Val (1,000 images) is the DG evaluation target.
"""
from __future__ import annotations

from pathlib import Path

from gkd.data import labelmaps as lm
from gkd.data.readers import Reader, register_reader


@register_reader
class BDD100K(Reader):
    name = "bdd100k"
    folder = "bdd100k"
    image_suffixes = (".jpg",)
    label_suffixes = (".png",)
    expected_counts = {"train": 7000, "val": 1000}
    layout_hint = "bdd100k/images/10k/<split>/<name>.jpg with bdd100k/labels/sem_seg/masks/<split>/<name>.png"

    def dirs(self, root: Path, split: str) -> tuple[Path, Path]:
        return root / "images" / "10k" / split, root / "labels" / "sem_seg" / "masks" / split

    def label_encoding(self, path: Path) -> lm.Encoding:
        return lm.TRAIN_IDS
