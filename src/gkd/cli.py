"""`gkd` command: helpers around the pipeline (the stages themselves are `python -m gkd.stages.<name>`)."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path


def cmd_dag(args) -> int:
    from gkd import config, dag, io
    cfg = config.load(args.params)
    text = dag.dvc_yaml(cfg, ablation=args.ablation)
    if args.check:
        current = Path(args.out).read_text() if Path(args.out).is_file() else ""
        if current != text:
            print(f"{args.out} is stale: run `gkd dag`", file=sys.stderr)
            return 1
        print(f"{args.out} is current")
        return 0
    io.write_text(args.out, text)
    print(f"wrote {args.out} ({len(dag.stages(cfg, args.ablation))} stages/groups)")
    return 0


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="gkd", description=__doc__)
    sub = p.add_subparsers(dest="command", required=True)
    d = sub.add_parser("dag", help="write dvc.yaml from the stage table (src/gkd/dag.py) and params.yaml")
    d.add_argument("--params", default="params.yaml")
    d.add_argument("--out", default="dvc.yaml")
    d.add_argument("--check", action="store_true", help="only check that the file is current (exit 1 if not)")
    d.add_argument("--ablation", action="store_true",
                   help="include the GKD ablation stages (slow: not part of the default `dvc repro`)")
    d.set_defaults(fn=cmd_dag)
    args = p.parse_args(argv)
    from gkd.config import ConfigError
    try:
        return args.fn(args)
    except ConfigError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
