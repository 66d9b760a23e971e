"""Student-only: the student segmenter trained on source labels; no teacher at all.

End to end by default; ``frozen: true`` keeps the student's own (pretrained) features frozen and trains
only the decoder — the "VFM student without KD" row of the F2F setting.
"""
from __future__ import annotations

from dataclasses import dataclass

from gkd.methods.base import Method, register_method


@dataclass(frozen=True)
class StudentOnlyOptions:
    frozen: bool = False


@register_method
class StudentOnly(Method):
    name = "student_only"
    display = "Student-only"
    Options = StudentOnlyOptions

    def frozen_backbone(self) -> bool:
        return self.options.frozen

    def label(self, key: str) -> str:
        return "Student (frozen, no KD)" if self.options.frozen else super().label(key)
