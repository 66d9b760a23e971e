"""Stage `teacher_weights`: the teacher backbone as ``models/<benchmark>/teachers/<teacher>/`` (see gkd.initialise)."""
from __future__ import annotations

from gkd import initialise
from gkd.stages import common

# the recipe: the pretraining section the teacher preset's `weights` trains it with (none for package/hub/file)
READS = common.Reads("seed", "benchmark.patch_size", "teacher", "runtime", recipe="teacher")


def main(argv=None) -> None:
    args, cfg = common.weights_cli("teacher", __doc__.splitlines()[0], READS, argv)
    initialise.build(cfg, "teacher", args.data, args.out)


if __name__ == "__main__":
    common.run_main(main)
