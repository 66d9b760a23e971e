"""Peak memory of the `prepare` stage against the size of the split it writes.

Generates a GTA5 tree in its official layout (``GTA5/images/NNNNN.png`` + ``GTA5/labels/NNNNN.png``,
palette labels of Cityscapes ids) plus a two-image Cityscapes val target, then runs
``python -m gkd.stages.prepare`` in a subprocess once per image count (the preset's ``train_images``
cap picks the first N of one generated tree) and records the subprocess's peak RSS, its RSS over
time and the bytes of the source split it wrote. Images are random noise, so PNG does not compress
them: the split's compressed size is about its raw size, the worst case for a writer that holds it.

    nice -n 19 python benchmarks/prepare_memory.py                 # N = 1000 and 5000 → results/prepare_memory.json
    nice -n 19 python benchmarks/prepare_memory.py --images 200 400 --out /tmp/pm.json
"""
from __future__ import annotations

import argparse
import itertools
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import psutil
import yaml
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "src"))
from gkd import io  # noqa: E402
from provenance import source_commit  # noqa: E402  (benchmarks/, the script's folder)

PRESET = "memprobe"


def write_gta5(raw: Path, n: int, height: int, width: int, seed: int = 0) -> None:
    """``n`` random image/label pairs; label values are Cityscapes ids 0..33 (every one is valid)."""
    rng = np.random.default_rng(seed)
    palette = rng.integers(0, 256, 768).astype(np.uint8).tobytes()
    images, labels = raw / "GTA5" / "images", raw / "GTA5" / "labels"
    images.mkdir(parents=True, exist_ok=True)
    labels.mkdir(parents=True, exist_ok=True)
    for i in range(1, n + 1):
        Image.fromarray(rng.integers(0, 256, (height, width, 3), dtype=np.uint8)).save(
            images / f"{i:05d}.png", compress_level=1)
        label = Image.fromarray(rng.integers(0, 34, (height, width), dtype=np.uint8), mode="L").convert("P")
        label.putpalette(palette)
        label.save(labels / f"{i:05d}.png", compress_level=1)


def write_cityscapes_val(raw: Path, n: int, height: int, width: int, seed: int = 1) -> None:
    """A minimal evaluation target (a benchmark needs one; its size does not matter here)."""
    rng = np.random.default_rng(seed)
    images, labels = raw / "cityscapes" / "leftImg8bit" / "val" / "town", raw / "cityscapes" / "gtFine" / "val" / "town"
    images.mkdir(parents=True, exist_ok=True)
    labels.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        stem = f"town_000000_{i:06d}"
        Image.fromarray(rng.integers(0, 256, (height, width, 3), dtype=np.uint8)).save(images / f"{stem}_leftImg8bit.png")
        Image.fromarray(rng.integers(0, 34, (height, width), dtype=np.uint8)).save(labels / f"{stem}_gtFine_labelIds.png")


def write_params(path: Path, raw: Path, images: int, image_size: int, crops: int, skip_bad: bool) -> None:
    """The repository's params.yaml plus one real preset over the generated tree."""
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    # presets that real benchmarks accept (the defaults' weights are trained on the synthetic generic stream)
    params.update(benchmark=PRESET, student="vit_t6_random", teacher="dinov2_s14")
    params["f2f"]["methods"] = []
    params["benchmarks"][PRESET] = dict(adapter="real", root=str(raw), image_size=image_size, patch_size=16,
                                        source="gta5", targets=["cityscapes"], train_crops=crops,
                                        train_images=images, target_images=2, skip_bad=skip_bad)
    path.write_text(yaml.safe_dump(params, sort_keys=False))


def measure(params: Path, out: Path, interval: float, src: Path) -> dict:
    """Run prepare in a child process; its peak RSS from the kernel (wait4), RSS samples from psutil."""
    cmd = [sys.executable, "-m", "gkd.stages.prepare", "--params", str(params), "--benchmark", PRESET,
           "--out", str(out)]
    env = dict(os.environ, PYTHONPATH=str(src), HF_DATASETS_OFFLINE="1", HF_HUB_OFFLINE="1")
    log_path = out.with_suffix(".log")
    start = time.perf_counter()
    with open(log_path, "wb") as log:  # a file, not a pipe: a full pipe would stall the child
        child = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
        proc, samples = psutil.Process(child.pid), []
        while True:
            pid, status, usage = os.wait4(child.pid, os.WNOHANG)  # this child's own rusage, not a running max
            if pid:
                break
            try:
                samples.append((round(time.perf_counter() - start, 1), round(proc.memory_info().rss / 2**20)))
            except psutil.NoSuchProcess:
                pass
            time.sleep(interval)
    wall = time.perf_counter() - start
    child.returncode = os.waitstatus_to_exitcode(status)  # reaped here; keeps Popen from waiting again
    if child.returncode != 0:
        raise SystemExit(f"prepare failed (exit {child.returncode}):\n{log_path.read_text()[-3000:]}")
    split = out / "gta5" / "train"
    return dict(peak_rss_mib=round(usage.ru_maxrss / 1024), wall_s=round(wall, 1),
                split_bytes=sum(f.stat().st_size for f in split.glob("*.arrow")),
                split_files=sorted(f.name for f in split.iterdir()), rss_mib_over_time=samples)


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--images", type=int, nargs="+", default=[1000, 5000], help="source images per run")
    p.add_argument("--height", type=int, default=256, help="image height, also the preset's image_size (no resize)")
    p.add_argument("--width", type=int, default=512, help="image width (>= height)")
    p.add_argument("--crops", type=int, default=2, help="train_crops: 2 square crops cover a 1:2 image")
    p.add_argument("--skip-bad", action="store_true",
                   help="also measure every N with `skip_bad: true` (a checking pass over all samples first)")
    p.add_argument("--interval", type=float, default=1.0, help="seconds between RSS samples")
    p.add_argument("--out", type=Path, default=ROOT / "results" / "prepare_memory.json")
    p.add_argument("--tmp", type=Path, default=None, help="where to build the tree (default: a temp folder)")
    p.add_argument("--src", type=Path, default=ROOT / "src",
                   help="the gkd source tree to measure, e.g. a copy of an older commit's src/ (default: this one)")
    args = p.parse_args(argv)
    if min(args.images) < 1:
        p.error(f"--images must be >= 1, got {args.images}")
    if not 1 <= args.height <= args.width:
        p.error(f"--height must be between 1 and --width ({args.width}), got {args.height}")

    with tempfile.TemporaryDirectory(dir=args.tmp, prefix="prepare_memory_") as tmp:
        tmp = Path(tmp)
        raw = tmp / "raw"
        t0 = time.perf_counter()
        write_gta5(raw, max(args.images), args.height, args.width)
        write_cityscapes_val(raw, 2, args.height, args.width)
        print(f"tree: {max(args.images)} GTA5 pairs {args.height}x{args.width} in {time.perf_counter() - t0:.0f} s",
              flush=True)
        runs = []
        modes = (False, True) if args.skip_bad else (False,)
        for skip_bad, n in itertools.product(modes, sorted(args.images)):
            params, out = tmp / f"params_{n}.yaml", tmp / f"prepared_{n}"
            write_params(params, raw, n, args.height, args.crops, skip_bad)
            run = dict(images=n, records=n * args.crops, skip_bad=skip_bad,
                       **measure(params, out, args.interval, args.src.resolve()))
            print(f"N={n}{' skip_bad' if skip_bad else ''}: peak RSS {run['peak_rss_mib']} MiB, "
                  f"split {run['split_bytes'] / 2**20:.0f} MiB, {run['wall_s']} s", flush=True)
            runs.append(run)
            shutil.rmtree(out)

    import datasets
    io.write_json(args.out, dict(
        what="peak RSS of `python -m gkd.stages.prepare` on a generated GTA5 tree (random-noise images)",
        image_hw=[args.height, args.width], train_crops=args.crops, image_size=args.height,
        commit=source_commit(), src=str(args.src), python=platform.python_version(), datasets=datasets.__version__,
        cpu_count=os.cpu_count(), runs=runs))
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
