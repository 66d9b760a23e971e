"""Student-only: the student segmenter fine-tuned end to end on source labels; no teacher at all."""
from __future__ import annotations

from gkd.distill import Method, register_method


@register_method
class StudentOnly(Method):
    name = "student_only"
    display = "Student-only"
