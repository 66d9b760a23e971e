"""UrbanSyn: ``rgb/rgb_0001.png`` with ``ss/ss_0001.png``.

Labels hold Cityscapes trainIds 0..18 with 19 = unlabeled (→ 255); 255 is accepted too because
GKD's ``urbansyn.py`` rewrites 19 → 255 in place. The release names images ``rgb_NNNN`` and labels
``ss_NNNN`` (reported, unverified), while GKD's config pairs identical names, so both
``ss/ss_NNNN.png`` and ``ss/rgb_NNNN.png`` are accepted. All images are training data.
"""
from __future__ import annotations

from pathlib import Path

from gkd.data import labelmaps as lm
from gkd.data.readers import Reader, register_reader


@register_reader
class UrbanSyn(Reader):
    name = "urbansyn"
    folder = "UrbanSyn"
    splits = ("train",)
    eval_split = None
    expected_counts = {"train": 7539}
    layout_hint = "UrbanSyn/rgb/rgb_NNNN.png with UrbanSyn/ss/ss_NNNN.png"

    def dirs(self, root: Path, split: str) -> tuple[Path, Path]:
        return root / "rgb", root / "ss"

    def label_candidates(self, label_dir: Path, rel: str) -> list[Path]:
        head, _, stem = rel.rpartition("/")
        prefix = f"{head}/" if head else ""
        names = [f"ss_{stem[4:]}"] if stem.startswith("rgb_") else []
        return [label_dir / f"{prefix}{n}.png" for n in [*names, stem]]

    def label_encoding(self, path: Path) -> lm.Encoding:
        return lm.URBANSYN_IDS
