"""Disk and compute at paper scale, per stage and benchmark, from the code's own shapes and operations.

Disk: what `teacher_features` (cache mode), `teacher_task`'s logits and the model folders would take for the
paper's five benchmarks. No real dataset is needed: the bytes per fixed view are *measured* by running the
pipeline's own ``teacher_signals`` on one 512-px image with each teacher's architecture (random weights: only
shapes matter), and multiplied by the image counts of the official splits (``IMAGES``, from the datasets'
documentation), the preset's ``train_crops`` and the views of params.yaml. Model folders are parameter
counts × 4 bytes (fp32 safetensors).

Compute: FLOPs per image of every stage kind, *counted* by torch's FLOP counter on one step of the code
`gkd bench --gpu` times (the DINOv2 ViT-S/14 teacher on the 512-px / patch-16 grid, a ViT-S student — the size
of `deit_s` and `dinov2_s`; run here on the CPU, which does not change the count), times the images each
stage processes with params.yaml's epochs, methods and views. GPU-hours: from a GPU's measured images/s where
``results/gpu_bench.json`` holds a run on a GPU; otherwise an *estimate* at ``ASSUMED_TFLOPS`` sustained, an
assumption stated in the output, not a measurement.

Written to ``results/paper_scale.json`` and printed as tables. Not here: the prepared data (≈ the raw images'
own size: `prepare` keeps the encoded files). Run: ``python benchmarks/paper_scale.py`` (about three minutes on
2 cores; needs the ``[dinov2]`` extra).
"""
from __future__ import annotations

import dataclasses
import sys
import tempfile
from pathlib import Path

import torch

from gkd import bench_gpu, io
from gkd.config import ModelConfig, build, load
from gkd.data.readers import get_reader
from gkd.data.real import EVAL_SCALES
from gkd.features import teacher_signals
from gkd.methods.base import build_method
from gkd.models.backbone import create_backbone
from gkd.models.decoders import slide_stride, window_starts

ROOT = Path(__file__).resolve().parent.parent
# Images of each official split the presets read (training sources: all of them; targets: their
# evaluation split). Counts as documented by each dataset; SYNTHIA's and UrbanSyn's are unverified.
IMAGES = {"gta5": 24_966, "synthia": 9_400, "urbansyn": 7_539, "cityscapes_train": 2_975, "cityscapes": 500,
          "bdd100k": 1_000, "mapillary": 2_000, "acdc_night": 106, "acdc_snow": 100, "acdc_fog": 100,
          "acdc_rain": 100, "potsdam_rgb": 3_456, "potsdam_irrg": 2_016, "vaihingen_irrg": 398}
BENCHMARKS = ("gta2city", "gta_synthia2city", "gta_synthia_urbansyn2city", "city2acdc", "potsdam2vaihingen")
TEACHERS = ("dinov2_s14", "dinov2_b", "dinov2_l")
GB = 1e9
IMAGENET_1K = 1_281_167   # stage 1a's images in the paper
# Sustained throughput assumed for the GPU-hour *estimate* where no GPU run of `gkd bench --gpu` exists: 10 %
# of an H100 SXM's dense bf16 peak (989 TFLOP/s). An assumption, not a measurement: ViT-S-sized models at
# batch 16-32 use a small fraction of the peak, and data loading (RandAugment on the CPU) is not counted.
ASSUMED_TFLOPS = 100


def source_images(source: str) -> int:
    return sum(IMAGES["cityscapes_train" if part == "cityscapes" else part] for part in source.split("+"))


def view_count(raw: dict) -> int:
    """Fixed views per training image in params.yaml: plain and mirrored, each with its jittered copies."""
    return (2 if raw["views"]["hflip"] else 1) * (1 + raw["views"]["photometric"])


def per_view_bytes(preset: ModelConfig, image_size: int, patch_size: int) -> dict[str, int]:
    """fp16 bytes of each cached signal for one view, measured on the code's own signal function."""
    preset = dataclasses.replace(preset, weights="none")
    teacher = create_backbone(preset, image_size, seed=0, patch_size=patch_size).eval()
    with torch.no_grad():
        got = teacher_signals(teacher, ("tokens", "shallow", "last"))(torch.zeros(1, 3, image_size, image_size))
    sizes = {k: v[0].numel() * 2 for k, v in got.items()}
    params = sum(p.numel() for p in teacher.parameters())
    grid = image_size // patch_size
    return {**sizes, "grid": grid, "params": params}


def main() -> None:
    cfg = load(ROOT / "params.yaml")
    raw = cfg.raw
    student = build(ModelConfig, raw["students"]["deit_s"], "students.deit_s")
    views = view_count(raw)
    rows, shapes = [], {}
    for name in TEACHERS:
        shapes[name] = per_view_bytes(build(ModelConfig, raw["teachers"][name], f"teachers.{name}"), 512, 16)
        print(f"{name}: {shapes[name]}", file=sys.stderr)
    s_bb = create_backbone(dataclasses.replace(student, weights="none"), 512, seed=0, patch_size=16)
    student_params = sum(p.numel() for p in s_bb.parameters())
    methods = len(raw["methods"]) + len(raw["f2f"]["methods"])
    for bench_name in BENCHMARKS:
        bench = raw["benchmarks"][bench_name]
        classes = len(get_reader(bench["source"].split("+")[0]).classes)
        src = source_images(bench["source"])
        crops = src * bench.get("train_crops", 1)
        heldout = sum(IMAGES[t] for t in bench["targets"])
        for name in TEACHERS:
            s = shapes[name]
            view = s["tokens"] + s["shallow"] + s["last"]
            logits = classes * s["grid"] ** 2 * 2
            rows.append({
                "benchmark": bench_name, "teacher": name, "source images": src, "training crops": crops,
                "views per crop": views,
                "MB per cached view (tokens+shallow+last)": round(view / 1e6, 2),
                "teacher_features GB (cache mode, KD baselines)": round(crops * views * view / GB, 1),
                "teacher_features GB (online: held-out tokens only)": round(heldout * s["tokens"] / GB, 2),
                "teacher_task logits GB": round(crops * views * logits / GB, 1),
                "teacher model MB": round(s["params"] * 4 / 1e6),
                "student models GB (deit_s, every method, one seed)":
                    round(methods * 2 * student_params * 4 / GB, 2),
            })
    flops, flops_1a = flops_per_image(512, 16), flops_per_image(224, 14)
    speed = measured_speed(ROOT / "results/gpu_bench.json")
    compute = [row for name in BENCHMARKS for row in compute_rows(cfg, name, flops, flops_1a, speed)]
    totals = [total_hours(compute, name) for name in BENCHMARKS]
    report = {"note": __doc__.split("\n\n")[0], "image_size": 512, "patch_size": 16, "views": views,
              "image_counts": IMAGES, "rows": rows,
              "compute": {"gflop_per_image_512px": flops, "gflop_per_image_224px_patch14": flops_1a,
                          "hours_from": speed["source"] if speed else
                          f"estimate: counted FLOPs at an assumed {ASSUMED_TFLOPS} TFLOP/s sustained (no GPU run)",
                          "rows": compute, "totals": totals}}
    io.write_json(ROOT / "results/paper_scale.json", report)
    import pandas as pd
    print(pd.DataFrame(rows).to_markdown(index=False))
    print(pd.DataFrame(compute).to_markdown(index=False))
    print(pd.DataFrame(totals).to_markdown(index=False))


def total_hours(compute: list[dict], bench_name: str) -> dict:
    """GPU-hours of one benchmark's whole F2L + F2F run (one seed): every stage × its runs, with and without 1a."""
    rows = [r for r in compute if r["benchmark"] == bench_name]

    def total(schedule: str, with_1a: bool) -> float:
        return round(sum(r[f"GPU-hours per run, {schedule}"] * r["runs (F2L + F2F, one seed)"] for r in rows
                         if with_1a or not r["stage"].startswith("distill 1a")), 1)
    return {"benchmark": bench_name, "params.yaml, no 1a": total("params.yaml", False),
            "params.yaml, 1a on ImageNet": total("params.yaml", True),
            "paper, no 1a": total("paper", False), "paper, 1a on ImageNet": total("paper", True)}


def flops_per_image(size: int = 512, patch_size: int = 16) -> dict[str, float]:
    """GFLOPs per image of each stage kind of `gkd bench --gpu`, counted on one step (the CPU counts the same)."""
    with tempfile.TemporaryDirectory() as tmp:
        figures = bench_gpu.run(Path(tmp) / "bench.json", size=size, batch=1, steps=1, warmup=0,
                                patch_size=patch_size, teacher_name="dinov2_s14", allow_cpu=True, say=lambda *_: None)
    return {kind: round(stage["gflop_per_image"], 2) for kind, stage in figures["stages"].items()}


def measured_speed(path: Path) -> dict | None:
    """images/s per stage kind from a `gkd bench --gpu` run on a GPU, if one was written."""
    if not path.exists():
        return None
    figures = io.read_json(path)
    if figures.get("device", "cpu") == "cpu":
        return None
    return {"source": f"{path.name}: {figures['device']}, {figures['dtype']}, batch {figures['batch_size']}",
            **{kind: stage["images_per_s"] for kind, stage in figures["stages"].items()}}


def eval_windows(target: str) -> int:
    """Sliding windows per test image, taking the image as its dataset's test box (long × short) at 512."""
    long_side, short_side = EVAL_SCALES[target].box
    stride = slide_stride(512)
    return len(window_starts(short_side, 512, stride)) * len(window_starts(long_side, 512, stride))


def compute_rows(cfg, bench_name: str, flops: dict, flops_1a: dict, speed: dict | None) -> list[dict]:
    """Images, GFLOP per image and GPU-hours of every stage of one benchmark's F2L and F2F tables (one seed), with
    params.yaml's epochs and with the paper's schedule (method.md: 1a 100 epochs of ImageNet at 224 px,
    1b 300 epochs of the source at 512, task training 40k iterations at batch 4)."""
    raw = cfg.raw
    bench = raw["benchmarks"][bench_name]
    images = source_images(bench["source"])
    crops = images * bench.get("train_crops", 1)
    views = view_count(raw)
    task_epochs, s1b, s1a = raw["adapt"]["epochs"], raw["distill"]["source_epochs"], raw["distill"]["generic_epochs"]
    methods = [build_method(cfg, name) for name in [*raw["methods"], *raw["f2f"]["methods"]]]
    cached_kd = any(m.teacher_inputs for m in methods)
    heldout = sum(IMAGES[t] for t in bench["targets"])
    windows = sum(IMAGES[t] * eval_windows(t) for t in bench["targets"])
    per_window = {"evaluate_window": flops["evaluate_slide"] / eval_windows("cityscapes")}  # bench: one 1024×512
    paper_task = 40_000 * 4
    stages = [  # stage, work, images with params.yaml, images with the paper's schedule, stage kind, FLOP table
        ("teacher_features", f"teacher forward, {views} views of every crop" if cached_kd else
         "teacher forward, held-out target images", crops * views if cached_kd else heldout,
         crops * views if cached_kd else heldout, "teacher_forward", flops),
        ("teacher_task", "decoder on the frozen teacher", task_epochs * crops, paper_task, "task_frozen", flops),
        ("teacher_task", f"its logits on {views} views of every crop", crops * views, crops * views,
         "teacher_forward", flops),
        ("distill 1a (per stage-1 method)", "ImageNet-1k at 224 px, online teacher (if generic_folder is set)",
         s1a * IMAGENET_1K, 100 * IMAGENET_1K, "stage1_online", flops_1a),
        ("distill 1b (per stage-1 method)", "source crops at 512 px, online teacher", s1b * crops, 300 * images,
         "stage1_online", flops),
        ("adapt (per frozen-backbone method)", "decoder only", task_epochs * crops, paper_task, "task_frozen", flops),
        ("adapt (per end-to-end method)", "whole student", task_epochs * crops, paper_task, "task_finetune", flops),
        ("evaluate (per method)", f"{heldout:,} target images = {windows:,} windows of 512 px", windows, windows,
         "evaluate_window", per_window),
    ]
    runs = {"distill 1a (per stage-1 method)": sum(m.stage1 for m in methods),
            "distill 1b (per stage-1 method)": sum(m.stage1 for m in methods),
            "adapt (per frozen-backbone method)": sum(m.frozen_backbone() for m in methods),
            "adapt (per end-to-end method)": sum(not m.frozen_backbone() for m in methods),
            "evaluate (per method)": len(methods) + 1}

    def hours(n: int, kind: str, gflop: float, table: dict) -> float:
        if speed is None or table is flops_1a:   # no GPU figure at this size: the estimate
            return n * gflop / (ASSUMED_TFLOPS * 1e3) / 3600
        if kind == "evaluate_window":            # the bench's images/s are of 3-window images
            return n / (speed["evaluate_slide"] * eval_windows("cityscapes")) / 3600
        return n / speed[kind] / 3600

    rows = []
    for stage, work, ours, paper, kind, table in stages:
        gflop = table[kind]
        rows.append({"benchmark": bench_name, "stage": stage, "work": work, "GFLOP per image": round(gflop, 1),
                     "runs (F2L + F2F, one seed)": runs.get(stage, 1),
                     "images, params.yaml": ours, "GPU-hours per run, params.yaml": round(hours(ours, kind, gflop, table), 3),
                     "images, paper": paper, "GPU-hours per run, paper": round(hours(paper, kind, gflop, table), 3)})
    return rows

if __name__ == "__main__":
    main()
