"""Stage `student_weights`: the student's initialisation as ``models/students/<student>/``, shared by every
method (seeded random init, a pretrained VFM-style student, or timm / local weights)."""
from __future__ import annotations

from gkd.stages import common
from gkd.stages.teacher_weights import weights_main


def main(argv=None) -> None:
    weights_main("student", __doc__.splitlines()[0], argv)


if __name__ == "__main__":
    common.run_main(main)
