"""How much rounding alone moves each stage: the same arithmetic under other kernels or another thread count.

Two hosts with the same code, data and teacher give different students (README, "Same inputs, same bytes"):
the CPU picks other kernels (torch's ``get_cpu_capability``: AVX2 here, AVX512 on a Zen 4), and a kernel that
sums in another order rounds differently. This script measures, on one machine, what such a change does, by
running the same computation in child processes that differ only in

* ``threads``: 1 instead of the pipeline's 2 (other reduction splits), and
* ``isa``: torch's own kernels at their ``default`` (no AVX) capability, MKL and oneDNN restricted to SSE4.2 —
  a stand-in for another CPU's kernels;

and reports (``results/numerics.json``):

1. the teacher's tokens on held-out images (teacher_features' computation): max |Δ| of the fp32 tokens and the
   share of fp16 cache entries that change;
2. stage 1 (distill's own step function, cached targets, phase 1b from the student's initialisation), per method
   and recipe: after k steps, how far the rounding variant's weights are from the reference's, as a share of
   how far the reference moved from the initialisation (0: rounding has no effect; 1: as large as training
   itself) — whether a recipe damps or amplifies rounding.

    python benchmarks/numerics.py --workspace . --steps 60 [--overlay recipe.yaml]

The workspace must have run the main pipeline's shared stages (prepared data, teacher, its cache, student
initialisation).
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import torch

from gkd import io
from gkd.config import for_run, load
from gkd.data.prepared import SegmentationSplit
from gkd.features import TeacherCache
from gkd.methods import build_method
from gkd.models.artifacts import load_backbone
from gkd.stages.distill import stage1_param_groups, stage1_step
from gkd.train import EpochSampler, seed_everything

sys.path.insert(0, str(Path(__file__).resolve().parent))
from provenance import source_commit  # noqa: E402  (benchmarks/, the script's folder)

VARIANTS = {
    "reference": {},
    "threads": {"GKD_NUMERICS_THREADS": "1"},
    "isa": {"ATEN_CPU_CAPABILITY": "default", "MKL_ENABLE_INSTRUCTIONS": "SSE4_2", "ONEDNN_MAX_CPU_ISA": "SSE41"},
}
SELECT = dict(benchmark="synthetic", teacher="dinov2_s14", student="vit_t6")


def _paths(ws: Path) -> dict[str, Path]:
    return {"data": ws / "data/prepared/synthetic", "teacher": ws / "models/synthetic/teachers/dinov2_s14",
            "student": ws / "models/synthetic/students/vit_t6", "features": ws / "features/synthetic/dinov2_s14"}


def child_teacher(ws: Path, n: int, out: Path) -> None:
    p = _paths(ws)
    teacher = load_backbone(p["teacher"], img_size=112, patch_size=14).eval()
    ds = SegmentationSplit(p["data"], "sim", "val", with_labels=False)
    x = torch.stack([ds[i][0] for i in range(n)]).float() / 255.0
    with torch.no_grad():
        tokens = torch.cat([teacher.forward_tokens(x[i:i + 16], with_levels=False)[0] for i in range(0, n, 16)])
    np.save(out, tokens.numpy())


def child_stage1(ws: Path, params: list[str], method_name: str, steps: int, out: Path) -> None:
    p = _paths(ws)
    cfg = for_run(load(params, **SELECT))
    method = build_method(cfg, method_name)
    seed_everything(cfg.seed)
    student = load_backbone(p["student"], img_size=112, patch_size=14, with_mask_token=True)
    cache = TeacherCache(p["features"] / "train")
    torch.manual_seed(cfg.seed + 1)  # distill's phase-1b head seed
    module = method.stage1_module(student, cache.shape("tokens")[1])
    optimizer = torch.optim.AdamW(stage1_param_groups(module, cfg.distill))
    step = stage1_step(cache, cfg.views, cfg.seed, cfg.seed, method.mask_ratio, student.num_patches, "cpu")
    ds = SegmentationSplit(p["data"], "sim", "train", with_labels=False)
    loader = torch.utils.data.DataLoader(ds, batch_size=cfg.distill.batch_size, sampler=EpochSampler(len(ds), cfg.seed),
                                         drop_last=True)
    snapshots, done = {}, 0
    checkpoints = sorted({max(1, steps // 6), steps // 2, steps})
    module.train()
    while done < steps:
        for batch in loader:
            for g in optimizer.param_groups:
                g["lr"] = 0.0 if done < g.get("hold_steps", 0) else g["base_lr"]
            terms = step(module, batch, "train", 0)
            optimizer.zero_grad(set_to_none=True)
            terms["loss"].backward()
            optimizer.step()
            done += 1
            if done in checkpoints:
                snapshots[str(done)] = torch.cat([v.detach().flatten() for v in module.student.vit.state_dict().values()
                                                  if v.dtype.is_floating_point]).numpy()
            if done >= steps:
                break
    np.savez(out, **snapshots)


def _run_child(variant: str, args: list[str]) -> None:
    env = dict(os.environ, **VARIANTS[variant])
    threads = env.pop("GKD_NUMERICS_THREADS", "2")
    env.update(OMP_NUM_THREADS=threads, GKD_NUMERICS_SET_THREADS=threads)
    subprocess.run([sys.executable, __file__, *args], env=env, check=True)


def initial_weights(ws: Path) -> np.ndarray:
    student = load_backbone(_paths(ws)["student"], img_size=112, patch_size=14, with_mask_token=True)
    return torch.cat([v.detach().flatten() for v in student.vit.state_dict().values()
                      if v.dtype.is_floating_point]).numpy()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--workspace", type=Path, default=Path("."))
    ap.add_argument("--steps", type=int, default=60, help="stage-1 steps per run")
    ap.add_argument("--images", type=int, default=64, help="held-out images for the teacher comparison")
    ap.add_argument("--methods", nargs="+", default=["gkd", "proteus"])
    ap.add_argument("--overlay", nargs="*", default=[], help="params overlays (a recipe) over params.yaml")
    ap.add_argument("--label", default="default", help="name of the recipe in the output")
    ap.add_argument("--out", type=Path, default=Path("results/numerics.json"))
    ap.add_argument("--child", nargs="+", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if os.environ.get("GKD_NUMERICS_SET_THREADS"):
        torch.set_num_threads(int(os.environ["GKD_NUMERICS_SET_THREADS"]))
    ws = args.workspace.resolve()
    params = [str(ws / "params.yaml"), *[str(Path(o).resolve()) for o in args.overlay]]
    if args.child:
        kind, out = args.child[0], Path(args.child[-1])
        if kind == "teacher":
            child_teacher(ws, args.images, out)
        else:
            child_stage1(ws, params, args.child[1], args.steps, out)
        return
    result = io.read_json(args.out) if args.out.is_file() else {}
    result.update(commit=source_commit(), capability=torch.backends.cpu.get_cpu_capability(), variants=VARIANTS)
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        if "teacher" not in result:
            tok = {}
            for v in VARIANTS:
                _run_child(v, ["--workspace", str(ws), "--images", str(args.images), "--child", "teacher",
                               str(tmp / f"t-{v}.npy")])
                tok[v] = np.load(tmp / f"t-{v}.npy")
            ref = tok["reference"]
            result["teacher"] = {v: {"max_abs_fp32": float(np.abs(t - ref).max()),
                                     "rms_rel_fp32": float(np.sqrt(((t - ref) ** 2).mean() / ref.var())),
                                     "fp16_changed_share": float((t.astype(np.float16) != ref.astype(np.float16)).mean())}
                                 for v, t in tok.items() if v != "reference"}
        w0 = initial_weights(ws)
        for method in args.methods:
            snaps = {}
            for v in VARIANTS:
                child = ["--workspace", str(ws), "--steps", str(args.steps), "--overlay", *args.overlay,
                         "--child", "stage1", method, str(tmp / f"s-{v}.npz")]
                _run_child(v, child)
                with np.load(tmp / f"s-{v}.npz") as z:
                    snaps[v] = {k: z[k] for k in z.files}
            ref = snaps["reference"]
            result.setdefault("stage1", {}).setdefault(args.label, {})[method] = {
                v: {k: float(np.linalg.norm(s[k] - ref[k]) / np.linalg.norm(ref[k] - w0)) for k in ref}
                for v, s in snaps.items() if v != "reference"}
            print(args.label, method, json.dumps(result["stage1"][args.label][method]))
    io.write_json(args.out, result)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
