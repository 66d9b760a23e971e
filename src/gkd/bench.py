"""`gkd bench`: the pipeline's speed, measured as side-by-side ratios in one run (this machine is noisy).

Figures, each written to ``results/bench.json``:
1. stage-1 step with cached teacher tokens vs re-running the teacher every step (the official code's
   way), at a ViT-B-class teacher / ViT-S-class student ratio; first-step losses of both compared;
2. framework overhead: our stage-1 step (augmentation, cache read, masks, loss terms, optimiser) vs
   the bare forward+backward+step of the same modules on the same tensors; and stage-1 images/s of
   both teacher modes through distill's own step function — ``cache`` (a cached view, its tokens read
   from the shard cache) and ``online`` (the paper's augmentation drawn and rendered, the frozen teacher
   run on it) — plus the online augmentation's own images/s;
3. data loading: loader images/s vs the images/s a training step consumes;
4. inference images/s of student vs teacher at the benchmark resolution;
5. no-op reruns of `dvc repro` and `snakemake` on an up-to-date workspace (when one is given);
plus the teacher-token cache's bytes per image and read throughput.
Models are randomly initialised: speed does not depend on the weights' values.
"""
from __future__ import annotations

import statistics
import subprocess
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from gkd import io, train
from gkd.config import AugmentConfig, ModelConfig, ViewsConfig
from gkd.data import views
from gkd.data.prepared import SegmentationSplit, write_split
from gkd.data.synthetic import render
from gkd.features import OnlineTeacher, TeacherCache, save_shard, write_index
from gkd.methods.gkd import GKD, GKDOptions
from gkd.methods.masking import first_half_mask
from gkd.models.artifacts import new_segmenter
from gkd.models.backbone import create_backbone
from gkd.stages.distill import stage1_step, targets_step

TEACHER = ModelConfig("vit_base_patch14_dinov2", patch_size=14)      # ViT-B-class teacher
STUDENT = ModelConfig("vit_small_patch16_224", patch_size=14)        # ViT-S-class student
# the online mode's augmentation as params.yaml sets it (the official stage-1 recipe)
PAPER_AUGMENT = AugmentConfig(crop_scale=[0.08, 1.0], crop_ratio=[0.75, 4 / 3], hflip=0.5, randaug_ops=2,
                              randaug_magnitude=9.0, randaug_magnitude_std=0.5, erasing=0.25)


def timed(fn, repeats: int, warmup: int = 1) -> float:
    """Median seconds of ``fn()`` over ``repeats`` runs after ``warmup`` runs."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return float(np.median(times))


def _images(n: int, size: int) -> torch.Tensor:
    return torch.from_numpy(np.stack([render("sim", (0, 99, i), size)[0] for i in range(n)])).permute(0, 3, 1, 2)


def stage1_cache_vs_recompute(size: int, batch: int, steps: int) -> dict:
    teacher = OnlineTeacher(create_backbone(TEACHER, size, seed=0), PAPER_AUGMENT, size)  # online mode's teacher
    images = _images(batch, size)
    cached = teacher.signals(images.float() / 255)["tokens"].half()  # the fp16 cache

    def make():
        student = create_backbone(STUDENT, size, seed=0, with_mask_token=True)
        module = GKD(GKDOptions()).stage1_module(student, teacher.token_shape()[1])
        opt = torch.optim.AdamW(train.param_groups(list(module.named_parameters()), 5e-4, 0.05))
        return module, opt

    rngs = [np.random.default_rng(i) for i in range(batch)]
    mask = first_half_mask(rngs, teacher.token_shape()[0] - 1, 0.5)

    def step(module, opt, recompute: bool):
        x = images.float() / 255
        if recompute:
            tokens = teacher.signals(x)["tokens"]
        else:
            tokens = cached.float()
        terms = module(x, tokens, mask)
        opt.zero_grad(set_to_none=True)
        terms["loss"].backward()
        opt.step()
        return terms["loss"].item()

    a, opt_a = make()
    b, opt_b = make()
    # The first steps also count matmul/conv/attention FLOPs (forward + backward): their ratio is the
    # speed-up that time proportional to FLOPs would give, the ceiling for the measured one.
    from torch.utils.flop_counter import FlopCounterMode
    with FlopCounterMode(display=False) as flops_cached:
        first_cached = step(a, opt_a, False)
    with FlopCounterMode(display=False) as flops_recompute:
        first_recomputed = step(b, opt_b, True)
    t_cached = timed(lambda: step(a, opt_a, False), steps)
    t_recompute = timed(lambda: step(b, opt_b, True), steps)
    return {"teacher": TEACHER.timm_name, "student": STUDENT.timm_name, "image_size": size, "batch": batch,
            "step_s_cached": t_cached, "step_s_recompute": t_recompute, "speedup": t_recompute / t_cached,
            "gflop_cached": flops_cached.get_total_flops() / 1e9,
            "gflop_recompute": flops_recompute.get_total_flops() / 1e9,
            "flop_ratio": flops_recompute.get_total_flops() / flops_cached.get_total_flops(),
            "first_loss_cached": first_cached, "first_loss_recompute": first_recomputed,
            "first_loss_rel_diff": abs(first_cached - first_recomputed) / abs(first_recomputed),
            "target_speedup": 2.0}


def framework_overhead(size: int, batch: int, steps: int, workdir: Path) -> dict:
    """Our loop's step (as `distill` runs it) vs the bare forward/backward/step on prepared tensors."""
    n = batch * (steps + 2)
    write_split(workdir / "data" / "sim" / "train",
                ((f"{i}", *_scene(i, size)) for i in range(n)))
    dataset = SegmentationSplit(workdir / "data", "sim", "train", with_labels=False)
    student = create_backbone(STUDENT, size, seed=0, with_mask_token=True)
    grid = student.grid
    dim = 768
    view_cfg = ViewsConfig(hflip=True, photometric=1, jitter=0.3)
    tokens = np.random.default_rng(0).standard_normal((n * view_cfg.count, 1 + grid[0] * grid[1], dim)).astype(np.float16)
    (workdir / "feat").mkdir()
    save_shard(workdir / "feat", "tokens", 0, tokens)
    write_index(workdir / "feat", n, view_cfg.count, n, {"tokens": tokens.shape[1:]}, {})
    cache = TeacherCache(workdir / "feat")
    module = GKD(GKDOptions()).stage1_module(student, dim)
    opt = torch.optim.AdamW(train.param_groups(list(module.named_parameters()), 5e-4, 0.05))
    loader = torch.utils.data.DataLoader(dataset, batch_size=batch, sampler=train.EpochSampler(n, 0), drop_last=True)
    step = stage1_step(cache, view_cfg, 0, 0, 0.5, student.num_patches, "cpu")

    def full_epoch():  # what train.fit does per batch around distill's step function
        for batch_ in loader:
            terms = step(module, batch_, "train", 0)
            opt.zero_grad(set_to_none=True)
            terms["loss"].backward()
            opt.step()

    x = torch.rand(batch, 3, size, size)
    t = torch.from_numpy(tokens[:batch].astype(np.float32))
    mask = first_half_mask([np.random.default_rng(i) for i in range(batch)], grid[0] * grid[1], 0.5)

    def bare_epoch():
        for _ in range(len(loader)):
            loss = module(x, t, mask)["loss"]
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()

    t_full = timed(full_epoch, 3)
    t_bare = timed(bare_epoch, 3)

    def load_only():
        for images, _, idx in loader:
            view = views.choose(train.sample_rngs(0, 0, idx), view_cfg.count)
            views.render(images, idx, view, view_cfg, 0)
            cache.get("tokens", idx.numpy(), view.numpy())

    t_load = timed(load_only, 3)

    # online mode: the same loop and modules, the targets from the teacher run on each step's augmented view
    online = OnlineTeacher(create_backbone(TEACHER, size, seed=0), PAPER_AUGMENT, size)
    online_step = targets_step(online, 0, 0.5, student.num_patches, "cpu")

    def online_epoch():
        for batch_ in loader:
            terms = online_step(module, batch_, "train", 0)
            opt.zero_grad(set_to_none=True)
            terms["loss"].backward()
            opt.step()

    def augment_only():
        for images, _, idx in loader:
            views.augment(images, train.sample_rngs(0, 0, idx), PAPER_AUGMENT, size)

    t_online = timed(online_epoch, 3)
    t_augment = timed(augment_only, 3)
    steps_per_epoch = len(loader)
    images = steps_per_epoch * batch
    return {"overhead": {"step_s": t_full / steps_per_epoch, "bare_step_s": t_bare / steps_per_epoch,
                         "ratio": t_full / t_bare, "target_ratio_max": 1.15},
            "loader": {"images_per_s": images / t_load,
                       "training_images_per_s": images / t_full,
                       "ratio": t_full / t_load, "target_ratio_min": 3.0},
            "stage1_modes": {"teacher": TEACHER.timm_name, "student": STUDENT.timm_name, "image_size": size,
                             "batch": batch, "device": "cpu", "teacher_precision": "fp32",
                             "images_per_s_cache": images / t_full, "images_per_s_online": images / t_online,
                             "online_augment_images_per_s": images / t_augment,
                             "cache_over_online": t_online / t_full}}


def _scene(i: int, size: int):
    return render("sim", (0, 98, i), size)


def inference(size: int, batch: int, repeats: int) -> dict:
    out = {}
    x = torch.rand(batch, 3, size, size)
    for role, mc in (("teacher", TEACHER), ("student", STUDENT)):
        seg = new_segmenter(create_backbone(mc, size, seed=0), "mlp", 128, 8).eval()
        with torch.no_grad():
            out[role] = batch / timed(lambda: seg.predict(x), repeats)
    return {"image_size": size, "teacher_images_per_s": out["teacher"], "student_images_per_s": out["student"],
            "ratio": out["student"] / out["teacher"], "target_ratio_min": 3.0}


def cache_io(size: int, n: int, workdir: Path) -> dict:
    """Bytes per image and random-batch read throughput of the fp16 shard cache (ViT-B grid)."""
    grid = size // TEACHER.patch_size
    arr = np.random.default_rng(0).standard_normal((n, 1 + grid * grid, 768)).astype(np.float16)
    d = workdir / "cache"
    d.mkdir()
    shard = 512
    for k in range(-(-n // shard)):
        save_shard(d, "tokens", k, arr[k * shard:(k + 1) * shard])
    write_index(d, n, 1, shard, {"tokens": arr.shape[1:]}, {})
    cache = TeacherCache(d)
    rng = np.random.default_rng(1)
    batches = [rng.choice(n, 32, replace=False).tolist() for _ in range(50)]
    t = timed(lambda: [cache.get("tokens", b) for b in batches], 3)
    size_bytes = sum(p.stat().st_size for p in d.glob("*.npy"))
    return {"bytes_per_image": size_bytes / n, "read_images_per_s": 50 * 32 / t, "format": "fp16 .npy shards, mmap"}


def noop_reruns(workspace: Path, repeats: int = 3) -> dict:
    """Seconds for `dvc repro` / `snakemake` with nothing to do: median of ``repeats`` after one
    warm-up call (which fills the OS file cache and Snakemake's per-params plan cache)."""
    out = {}
    for name, cmd in (("dvc_repro_s", ["dvc", "repro"]), ("snakemake_s", ["snakemake", "--cores", "all"])):
        subprocess.run(cmd, cwd=workspace, capture_output=True, text=True)
        times, ok = [], True
        for _ in range(repeats):
            start = time.perf_counter()
            proc = subprocess.run(cmd, cwd=workspace, capture_output=True, text=True)
            times.append(time.perf_counter() - start)
            log = proc.stdout + proc.stderr
            ok &= proc.returncode == 0 and "Running stage" not in log and "Finished job" not in log
        out[name] = statistics.median(times)
        out[name.replace("_s", "_ok")] = ok
    out["target_s_max"] = 5.0
    return out


def run(out: Path, size: int = 112, batch: int = 32, steps: int = 5, workspace: Path | None = None) -> dict:
    torch.manual_seed(0)
    results: dict = {"threads": torch.get_num_threads()}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        results["stage1_cache"] = stage1_cache_vs_recompute(size, batch, steps)
        results.update(framework_overhead(size, batch, steps, tmp))
        results["inference"] = inference(size, 64, steps)
        results["cache"] = cache_io(size, 2048, tmp)
    if workspace is not None:
        results["noop"] = noop_reruns(workspace)
    io.write_json(out, results)
    return results


def summary(results: dict) -> str:
    modes = results["stage1_modes"]
    rows = [("stage-1 step: recompute teacher / cached tokens", results["stage1_cache"]["speedup"], "≥ 2"),
            ("  the same, in FLOPs (ceiling of the above)", results["stage1_cache"]["flop_ratio"], ""),
            ("stage-1 images/s, teacher_features.mode cache", modes["images_per_s_cache"], ""),
            ("stage-1 images/s, teacher_features.mode online", modes["images_per_s_online"], ""),
            ("  online augmentation alone, images/s", modes["online_augment_images_per_s"], ""),
            ("framework step / bare fwd+bwd", results["overhead"]["ratio"], "≤ 1.15"),
            ("loader img/s / training img/s", results["loader"]["ratio"], "≥ 3"),
            ("student / teacher inference img/s", results["inference"]["ratio"], "≥ 3")]
    lines = [f"{'figure':<50} {'value':>8}  target"]
    lines += [f"{name:<50} {value:>8.2f}  {target}" for name, value, target in rows]
    c = results["cache"]
    lines.append(f"{'teacher cache bytes/image (ViT-B, fp16)':<50} {c['bytes_per_image']:>8.0f}")
    lines.append(f"{'teacher cache read img/s (random batches)':<50} {c['read_images_per_s']:>8.0f}")
    if "noop" in results:
        lines.append(f"{'no-op dvc repro (s)':<50} {results['noop']['dvc_repro_s']:>8.2f}  ≤ 5")
        lines.append(f"{'no-op snakemake (s)':<50} {results['noop']['snakemake_s']:>8.2f}  ≤ 5")
    lines.append(f"first-step loss, cached vs recomputed teacher: {results['stage1_cache']['first_loss_cached']:.6f} vs "
                 f"{results['stage1_cache']['first_loss_recompute']:.6f}")
    return "\n".join(lines)
