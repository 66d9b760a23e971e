"""Disk at paper scale, per stage and benchmark: what `teacher_features` (cache mode), `teacher_task`'s
logits and the model folders would take for the paper's five benchmarks, from the code's own shapes.

No real dataset is needed: the bytes per fixed view are *measured* by running the pipeline's own
``teacher_signals`` on one 512-px image with each teacher's architecture (random weights: only shapes
matter), and multiplied by the image counts of the official splits (``IMAGES``, from the datasets'
documentation), the preset's ``train_crops`` and the views of params.yaml. Model folders are parameter
counts × 4 bytes (fp32 safetensors). Written to ``results/paper_scale.json`` and printed as a table.

Not here: the prepared data (≈ the raw images' own size: `prepare` keeps the encoded files) and GPU-hours
(`gkd bench --gpu` on a GPU machine). Run: ``python benchmarks/paper_scale.py`` (about a minute on 2 cores).
"""
from __future__ import annotations

import dataclasses
import sys
from pathlib import Path

import torch

from gkd import io
from gkd.config import ModelConfig, build, load
from gkd.data.readers import get_reader
from gkd.features import teacher_signals
from gkd.models.backbone import create_backbone

ROOT = Path(__file__).resolve().parent.parent
# Images of each official split the presets read (training sources: all of them; targets: their
# evaluation split). Counts as documented by each dataset; SYNTHIA's and UrbanSyn's are unverified.
IMAGES = {"gta5": 24_966, "synthia": 9_400, "urbansyn": 7_539, "cityscapes_train": 2_975, "cityscapes": 500,
          "bdd100k": 1_000, "mapillary": 2_000, "acdc_night": 106, "acdc_snow": 100, "acdc_fog": 100,
          "acdc_rain": 100, "potsdam_rgb": 3_456, "potsdam_irrg": 2_016, "vaihingen_irrg": 398}
BENCHMARKS = ("gta2city", "gta_synthia2city", "gta_synthia_urbansyn2city", "city2acdc", "potsdam2vaihingen")
TEACHERS = ("dinov2_s14", "dinov2_b", "dinov2_l")
GB = 1e9


def source_images(source: str) -> int:
    return sum(IMAGES["cityscapes_train" if part == "cityscapes" else part] for part in source.split("+"))


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
    raw = load(ROOT / "params.yaml").raw
    student = build(ModelConfig, raw["students"]["deit_s"], "students.deit_s")
    views = (2 if raw["views"]["hflip"] else 1) * (1 + raw["views"]["photometric"])
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
    report = {"note": __doc__.split("\n\n")[0], "image_size": 512, "patch_size": 16, "views": views,
              "image_counts": IMAGES, "rows": rows}
    io.write_json(ROOT / "results/paper_scale.json", report)
    import pandas as pd
    print(pd.DataFrame(rows).to_markdown(index=False))


if __name__ == "__main__":
    main()
