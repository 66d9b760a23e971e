"""Stage `teacher_weights`: the teacher backbone as ``models/teachers/<teacher>/`` (see gkd.models.weights)."""
from __future__ import annotations

from pathlib import Path

from gkd.models import weights
from gkd.stages import common


def weights_main(role: str, description: str, argv=None) -> None:
    """The CLI of both weight stages; ``role`` is the selector (teacher or student) whose preset is built."""
    p = common.parser(description, selectors=("benchmark", role))
    p.add_argument("--data", required=True, type=Path, help="prepared benchmark (read by weights: pretrain)")
    p.add_argument("--out", required=True, type=Path, help=f"output folder models/{role}s/<{role}>")
    args = p.parse_args(argv)
    cfg = common.setup(args, ("benchmark", role))
    weights.build(cfg, getattr(cfg, role), getattr(cfg, f"{role}_name"), args.data, args.out)


def main(argv=None) -> None:
    weights_main("teacher", __doc__.splitlines()[0], argv)


if __name__ == "__main__":
    common.run_main(main)
