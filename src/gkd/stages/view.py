"""Stage `view` (one per table): the selected experiment's tables at their fixed paths.

Every output is namespaced by the selectors it depends on (``results/<benchmark>/<teacher>/<student>/…``,
see ``gkd.dag``), so experiments live side by side; this copies the tables of the experiment that
params.yaml (or ``--config``) selects to ``results/<table>.csv``, the paths users ask for. Its own stage —
not a second output of the report — because a front-end decides what to rebuild from the file asked for:
Snakemake reruns a rule whose input paths changed only when every output of that rule has a record, so a
view beside a missing namespaced table would look up to date after a switch of selectors.

Plain Python, no torch: a view costs a process start, not a model load.
"""
from __future__ import annotations

from pathlib import Path

from gkd import io
from gkd.show import summary
from gkd.stages.args import CURRENT, StageParser, record_provenance


def main(argv=None) -> None:
    p = StageParser(description=__doc__.splitlines()[0])
    p.input("--tables", nargs="+", required=True, type=Path, help="the namespaced tables")
    p.output("--out", nargs="+", required=True, type=Path, help="their fixed paths, same order")
    args = p.parse_args(argv)
    if len(args.tables) != len(args.out):
        p.error(f"{len(args.tables)} tables but {len(args.out)} output paths")
    for src, dst in zip(args.tables, args.out):
        io.write_text(dst, src.read_text())
    CURRENT.update(args=args)
    record_provenance()
    if any(dst.name == "f2l_table.csv" for dst in args.out):  # what `dvc repro` shows as this stage's output
        print(summary(args.out[0].parent), flush=True)


if __name__ == "__main__":
    main()
