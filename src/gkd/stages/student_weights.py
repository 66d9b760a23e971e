"""Stage `student_weights`: the student's initialisation as ``models/<benchmark>/students/<student>/``, shared by every
method and seed (image-level or VFM-style pretraining here, a random init, timm or a local file)."""
from __future__ import annotations

from gkd import initialise
from gkd.stages import common

# the recipe: the pretraining section the student preset's `weights` trains it with (none for random/hub/file)
READS = common.Reads("seed", "benchmark.patch_size", "student", "runtime", recipe="student")


def main(argv=None) -> None:
    args, cfg = common.weights_cli("student", __doc__.splitlines()[0], READS, argv)
    initialise.build(cfg, "student", args.data, args.out)


if __name__ == "__main__":
    common.run_main(main)
