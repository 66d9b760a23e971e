"""Stage `prepare`: benchmark preset → ``data/prepared/<benchmark>/`` (+ a picture of samples).

The embedded `synthetic` benchmark is generated here; real benchmarks are converted from their
official on-disk layouts by the adapter the preset names.
"""
from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
from tqdm import tqdm

from gkd import io
from gkd.data.adapters import ADAPTERS
from gkd.data.prepared import open_split, read_meta, write_split
from gkd.stages import common

log = logging.getLogger("gkd.prepare")
# the benchmark preset is handed to its adapter whole; `datasets` locates real datasets
READS = common.Reads("seed", "benchmark", "datasets")


def run(cfg, out: Path, samples_png: Path | None, manifest: Path | None = None) -> dict:
    bench = cfg.benchmark
    adapter = ADAPTERS.lookup(bench.adapter)  # imports that adapter's module only (gkd.dag: prepare's code)
    if bench.adapter == "real" and manifest is None:
        warn_untracked(cfg)
    info, records = adapter(bench, cfg.seed, cfg.datasets)  # validates the preset before anything is written
    meta = dict(name=cfg.benchmark_name, classes=info["classes"], palette=info["palette"],
                source=info.get("source", bench.source),
                targets=list(bench.targets), image_size=bench.image_size, splits={})
    with io.atomic_path(out, is_dir=True) as tmp:
        for domain, split, count, recs in records:
            bar = tqdm(recs, total=count, desc=f"{domain}/{split}", mininterval=2, leave=False)
            n = write_split(tmp / domain / split, bar)
            meta["splits"].setdefault(domain, {})[split] = n
            log.info("%s/%s: %d images", domain, split, n)
        io.write_json(tmp / "meta.json", meta)
        skipped = getattr(adapter, "last_skipped", None)
        if skipped:  # opted in with skip_bad: nothing is dropped silently
            io.write_json(tmp / "skipped.json", skipped)
            log.warning("%d bad samples skipped: listed in %s", len(skipped), out / "skipped.json")
    if samples_png is not None:
        plot_samples(out, samples_png)
    return meta


def warn_untracked(cfg) -> None:
    """A real benchmark prepared by a command declared without its raw-file manifest (a dvc.yaml rendered
    for `synthetic`, then `-S benchmark=<real>`): it works, but nothing reruns when raw files change."""
    log.warning("the raw files of %s are not tracked: prepare runs without --manifest (in a pipeline: a dvc.yaml "
                "rendered for a benchmark without raw data, then -S benchmark=...), so a changed raw file will not "
                "rerun it. Select the benchmark in params.yaml and run `gkd dag` to add the `manifest` stage "
                "(README, Run on real benchmarks)", cfg.benchmark_name)


def plot_samples(root: Path, path: Path, per_domain: int = 4) -> None:
    """A grid: one row per domain, image and colour-coded label side by side."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    meta = read_meta(root)
    palette = np.array(meta.palette, np.uint8)
    order = [meta.source, *meta.targets, *sorted(set(meta.splits) - {meta.source, *meta.targets})]
    rows = [(d, s) for d in order for s in meta.splits.get(d, {}) if s != "val"]
    fig, axes = plt.subplots(len(rows), 2 * per_domain, figsize=(2 * per_domain * 1.3, len(rows) * 1.45), dpi=110)
    for r, (domain, split) in enumerate(rows):
        ds = open_split(root, domain, split)
        for k in range(per_domain):
            row = ds[k % len(ds)]
            label = np.asarray(row["label"])
            colour = np.zeros((*label.shape, 3), np.uint8)
            valid = label < len(palette)
            colour[valid] = palette[label[valid]]
            for j, pic in enumerate((np.asarray(row["image"].convert("RGB")), colour)):
                ax = axes[r, 2 * k + j]
                ax.imshow(pic)
                ax.set_xticks([]), ax.set_yticks([])
                if k == 0 and j == 0:
                    ax.set_ylabel(f"{domain}\n({split})", fontsize=9)
    handles = [plt.Rectangle((0, 0), 1, 1, color=np.array(c) / 255) for c in meta.palette]
    fig.legend(handles, meta.classes, loc="lower center", ncol=len(meta.classes), fontsize=8, frameon=False)
    fig.suptitle(f"benchmark `{meta.name}`: image | label, per domain", fontsize=10)
    fig.tight_layout(rect=(0, 0.03, 1, 0.97))
    io.save_figure(path, fig)
    plt.close(fig)


def main(argv=None) -> None:
    p = common.parser(__doc__.splitlines()[0], selectors=("benchmark",))
    p.output("--out", required=True, type=Path, help="output folder data/prepared/<benchmark>")
    p.output("--samples", type=Path, default=None, help="PNG with a few samples per domain")
    p.input("--manifest", type=Path, default=None,
                   help="the raw files' manifest (stage `manifest`): an input the front-ends rerun this stage on")
    args = p.parse_args(argv)
    cfg = common.setup(args, READS, ("benchmark",))
    run(cfg, args.out, args.samples, args.manifest)


if __name__ == "__main__":
    common.run_main(main)
