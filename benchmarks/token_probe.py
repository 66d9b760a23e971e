"""Is the teacher's CLS token in the student? A closed-form ridge regression from the student's CLS token to the
teacher's, fitted on the plain view of the source's training images and scored on held-out source images.

Compares with what stage 1's trained token head reaches (``fidelity.json``, R² of the token term): if a linear
map fitted in one shot from the same student does much better, the head — not the student — limits the term.
Reads a workspace where the default F2L target ran (prepared data, the teacher cache, the student's
initialisation and the GKD / Proteus stage-1 students); writes ``results/token_probe.json``.

Run: ``python benchmarks/token_probe.py [workspace]`` (default: this checkout; about a minute on 2 cores).
"""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import torch

from gkd import features, io
from gkd.config import load
from gkd.data.prepared import SegmentationSplit, read_meta
from gkd.fidelity import tokens
from gkd.models.artifacts import load_backbone

torch.set_num_threads(1)  # a probe beside other work; ridge and 112-px forwards need no more
RIDGE = (1.0, 10.0, 100.0)   # on standardised features; the best held-out value is reported with its λ


def ridge_r2(x_fit: torch.Tensor, y_fit: torch.Tensor, x_held: torch.Tensor, y_held: torch.Tensor,
             lam: float) -> float:
    """Held-out R² (against the held-out targets' own variance) of a ridge map fitted on (x_fit, y_fit)."""
    mean, std = x_fit.mean(0), x_fit.std(0) + 1e-6
    ones = torch.ones(1, dtype=x_fit.dtype)
    a = torch.cat([(x_fit - mean) / std, ones.expand(len(x_fit), 1)], 1)
    b = torch.cat([(x_held - mean) / std, ones.expand(len(x_held), 1)], 1)
    w = torch.linalg.solve(a.T @ a + lam * torch.eye(a.shape[1], dtype=a.dtype), a.T @ y_fit)
    return float(1 - (b @ w - y_held).pow(2).mean() / y_held.var(0, unbiased=False).mean())


def main(workspace: Path) -> None:
    cfg = load(workspace / "params.yaml")
    bench, teacher, student = cfg.benchmark_name, cfg.teacher_name, cfg.student_name
    data = workspace / "data/prepared" / bench
    meta = read_meta(data)
    cache_dir = workspace / "features" / bench / teacher
    fit = SegmentationSplit(data, meta.source, "train", with_labels=False, memo_bytes=0)
    held = features.CenterCrop(SegmentationSplit(data, meta.source, "val", with_labels=False, memo_bytes=0),
                               meta.image_size)
    plain_fit, plain_held = np.zeros(len(fit), dtype=int), np.zeros(len(held), dtype=int)
    t_fit = features.TeacherCache(cache_dir / "train").get("tokens", np.arange(len(fit)), plain_fit)[:, 0].double()
    t_held = features.TeacherCache(cache_dir / features.heldout_key(meta.source)).get(
        "tokens", np.arange(len(held)), plain_held)[:, 0].double()
    exp = workspace / "models" / bench / teacher / student
    students = {"before stage 1": workspace / "models" / bench / "students" / student,
                "gkd stage 1": exp / "gkd/stage1", "proteus stage 1": exp / "proteus/stage1"}
    rows = []
    for name, path in students.items():
        backbone = load_backbone(path, img_size=meta.image_size, seed=cfg.seed, patch_size=cfg.benchmark.patch_size)
        with torch.no_grad():
            s_fit, s_held = tokens(backbone, fit, 64)[:, 0].double(), tokens(backbone, held, 64)[:, 0].double()
        scores = {lam: ridge_r2(s_fit, t_fit, s_held, t_held, lam) for lam in RIDGE}
        best = max(scores, key=scores.get)
        head = None
        if (path / "fidelity.json").exists():
            head = io.read_json(path / "fidelity.json")["phases"]["1b"]["domains"][meta.source]["token"]["r2"]
        rows.append({"student": name, "ridge_r2_heldout": round(scores[best], 4), "ridge_lambda": best,
                     "token_head_r2_heldout": head})
        print(rows[-1])
    io.write_json(workspace / "results/token_probe.json",
                  {"note": __doc__.split("\n\n")[0], "fit": f"{meta.source}/train (plain view)",
                   "heldout": f"{meta.source}/val", "rows": rows})


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__file__).resolve().parent.parent)
