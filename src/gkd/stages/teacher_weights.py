"""Stage `teacher_weights`: the teacher backbone as ``models/<benchmark>/teachers/<teacher>/`` (see gkd.initialise)."""
from __future__ import annotations

from gkd import initialise
from gkd.stages import common


def main(argv=None) -> None:
    args, cfg = common.weights_cli("teacher", __doc__.splitlines()[0], argv)
    initialise.build(cfg, "teacher", args.data, args.out)


if __name__ == "__main__":
    common.run_main(main)
