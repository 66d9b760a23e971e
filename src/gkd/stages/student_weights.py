"""Stage `student_weights`: the student initialisation as ``models/students/<student>/`` (see gkd.models.weights)."""
from __future__ import annotations

from pathlib import Path

from gkd.models import weights
from gkd.stages import common


def main(argv=None) -> None:
    p = common.parser(__doc__.splitlines()[0], selectors=("benchmark", "student"))
    p.add_argument("--data", required=True, type=Path, help="prepared benchmark (read by weights: pretrain)")
    p.add_argument("--out", required=True, type=Path, help="output folder models/students/<student>")
    args = p.parse_args(argv)
    cfg = common.setup(args, ("benchmark", "student"))
    weights.build(cfg, cfg.student, cfg.student_name, args.data, args.out)


if __name__ == "__main__":
    common.run_main(main)
