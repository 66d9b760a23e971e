"""Stage `distill` (stage 1): label-free representation distillation of the student from the teacher's tokens.

Two phases, as the official code's two runs, each with fresh heads, a fresh optimiser and its own
cosine schedule: 1a on the generic stream (if the benchmark has one and ``distill.generic_epochs`` > 0),
then 1b on the source training images — images only, no labels. The target of every step is the
teacher's output on exactly the view the student gets, from one of two sources (``gkd.features``),
chosen by ``teacher_features.mode`` (``auto``: cache for the synthetic benchmark, online for real data):

* ``cache`` (``--features``): the teacher_features cache of a fixed set of views per image
  (``gkd.data.views``); the teacher is never run here;
* ``online`` (``--teacher-weights``): the frozen teacher runs here, on a fresh stage-1 augmentation
  per sample and step (``views.augment``); no cache. The held-out tokens of the fidelity check are
  computed at the start into the resume folder (removed on success), and the constant-mean baseline
  is the teacher's mean token over one online view of every training image.

Each phase ends with the fidelity check (``gkd.fidelity``): every loss term on held-out images
of every held-out domain, next to the constant-mean baseline and as R² of the teacher's tokens. The
stage writes it as ``fidelity.json`` beside the distilled backbone.
"""
from __future__ import annotations

import dataclasses
import logging
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from gkd import features, io, train
from gkd.data.prepared import SegmentationSplit, read_meta
from gkd.methods import LabelFreeMethod, build_method
from gkd import fidelity as fidelity_mod
from gkd.methods.masking import first_half_mask
from gkd.errors import ConfigError
from gkd.models.artifacts import load_backbone, save_backbone
from gkd.stages import common

log = logging.getLogger(__name__)
READS = common.Reads("seed", "benchmark.patch_size", "benchmark.adapter", "student", "views",
                     "teacher_features", "distill", "evaluate.batch_size", "runtime", methods="selected")


def phases(cfg, meta) -> list[tuple[str, str, int]]:
    """(cache key, domain, epochs) of the phases this config runs: 1a generic, 1b source."""
    d = cfg.distill
    out = []
    if "generic" in meta.splits and d.generic_epochs > 0:
        out.append(("generic", "generic", d.generic_epochs))
    elif d.generic_epochs > 0:  # a departure from the paper's recipe: say so, and how to get 1a
        where = f"benchmarks.{cfg.benchmark_name}"
        fix = (f"set {where}.generic_images > 0" if cfg.benchmark.adapter == "synthetic" else
               f"name a folder of images (the paper: ImageNet's train folder) as {where}.generic_folder")
        log.warning("distill: phase 1a skipped: the prepared benchmark %r has no generic split (to run it, %s); "
                    "stage 1 is phase 1b only, on the source images", meta.name, fix)
    else:
        log.info("distill: phase 1a skipped: distill.generic_epochs is 0")
    if d.source_epochs > 0:
        out.append(("train", meta.source, d.source_epochs))
    if not out:
        raise ConfigError("distill: no phase to run (generic_epochs and source_epochs are both 0)")
    return out


def teacher_input(cfg, features_dir: Path | None, teacher_dir: Path | None) -> Path:
    """The input the configured teacher mode reads. The DAG always passes the teacher's weights and, where
    the selected benchmark caches, the cache (``gkd.dag``); a command without the cache that the mode needs
    (a dvc.yaml rendered for an online benchmark, then `-S` to a cached one) is refused before any work."""
    mode = cfg.teacher_mode
    given = {"cache": (features_dir, "--features"), "online": (teacher_dir, "--teacher-weights")}
    path, flag = given[mode]
    if path is None:
        stated = (repr(mode) if cfg.teacher_features.mode == mode
                  else f"'auto', so {mode!r} for a {cfg.benchmark.adapter} benchmark,")
        other = "online" if mode == "cache" else "cache"
        raise ConfigError(f"distill: teacher_features.mode is {stated} which reads {flag}, but this command was "
                          f"declared for the {other} mode (a dvc.yaml rendered for another benchmark, e.g. before "
                          f"`-S benchmark=...`): select the benchmark in params.yaml and run `gkd dag`, or set "
                          f"teacher_features.mode: {other}")
    return path


@dataclass
class TeacherSource:
    """Where stage 1's targets come from, one interface for both modes: per phase key the teacher that renders
    each sample's view and gives its tokens (``features.CachedTeacher`` / ``OnlineTeacher``), the held-out sets
    with the teacher's tokens on them, and each phase's constant-mean baseline (``constant``)."""
    teachers: dict[str, object]
    held: dict[str, tuple]
    constant: Callable[[str], dict]
    info: dict  # recorded with the backbone and in fidelity.json (cache runs: none, as they always were)

    def token_shape(self, key: str) -> tuple[int, int]:
        return self.teachers[key].token_shape()


def run(cfg, method_name: str, data: Path, student_weights: Path, out: Path, live_dir: Path | None, *,
        features_dir: Path | None = None, teacher_dir: Path | None = None) -> None:
    """Stage 1: the teacher's source, then the phases (1a, 1b), each followed by its fidelity check."""
    method = stage1_method(cfg, method_name)
    source_dir = teacher_input(cfg, features_dir, teacher_dir)
    meta = read_meta(data)
    plan = phases(cfg, meta)
    splits = {key: SegmentationSplit(data, domain, "train", with_labels=False) for key, domain, _ in plan}
    heldout = heldout_sets(data, meta)
    caches = None if cfg.teacher_mode == "online" else check_caches(cfg, source_dir, plan, splits, heldout)
    with train.StageRun(cfg.runtime, cfg.train_seed, out, live_dir) as stage:
        student = load_student(cfg, student_weights, meta)
        source = (online_source(cfg, stage, source_dir, meta, plan, splits, heldout) if caches is None
                  else cached_source(cfg, caches, plan))
        check_token_grid(source.token_shape(plan[0][0]), student)
        student.to(stage.acc.device)
        report, init_tokens = initial_report(cfg, method_name, student, source, stage.acc.device)
        student, total_steps = run_phases(cfg, method, method_name, plan, splits, source, student, meta, stage,
                                          report, init_tokens)
        stage.save(lambda tmp: write_stage1(tmp, cfg, method_name, student, meta, plan, total_steps, source, report))


def stage1_method(cfg, name: str) -> LabelFreeMethod:
    method = build_method(cfg, name)
    if not isinstance(method, LabelFreeMethod):
        raise ConfigError(f"method {name!r} has no stage 1 (distill); it trains in `adapt` only")
    return method


def heldout_sets(data: Path, meta) -> dict[str, tuple]:
    """domain → (centre-cropped held-out split, its split name): what the fidelity check scores on."""
    return {domain: (features.CenterCrop(SegmentationSplit(data, domain, split, with_labels=False, memo_bytes=0),
                                         meta.image_size), split)
            for domain, split in features.heldout_splits(meta)}


def check_caches(cfg, features_dir: Path, plan, splits: dict, heldout: dict) -> dict:
    """Cache mode: every cache the stage reads, checked against its split before any compute."""
    training = {key: features.TeacherCache(features_dir / key).check(len(splits[key]), cfg.views.for_cache(key).count,
                                                                      f"{domain}/train")
                for key, domain, _ in plan}
    held = {domain: (ds, features.TeacherCache(features_dir / features.heldout_key(domain))
                     .check(len(ds), 1, f"{domain}/{split}")) for domain, (ds, split) in heldout.items()}
    return {"training": training, "held": held}


def cached_source(cfg, caches: dict, plan) -> TeacherSource:
    training = caches["training"]
    return TeacherSource({key: features.CachedTeacher(training[key], cfg.views.for_cache(key), cfg.seed)
                          for key, _, _ in plan}, caches["held"],
                         lambda key: fidelity_mod.constant_predictions(training[key]), {})


def online_source(cfg, stage, teacher_dir: Path, meta, plan, splits: dict, heldout: dict) -> TeacherSource:
    """Online mode: the frozen teacher loaded here; the held-out tokens computed now into the resume folder."""
    acc = stage.acc
    teacher = load_backbone(teacher_dir, img_size=meta.image_size, seed=cfg.seed,
                            patch_size=cfg.benchmark.patch_size).to(acc.device)
    online = features.OnlineTeacher(teacher, cfg.teacher_features.augment, meta.image_size)
    held = online_heldout(acc, online, heldout, stage.resume / "teacher_heldout", cfg)
    return TeacherSource({key: online for key, _, _ in plan}, held,
                         lambda key: online_constant(acc, online, splits[key], cfg.train_seed,
                                                     cfg.teacher_features.batch_size),
                         {"teacher_mode": "online", "augment": dataclasses.asdict(cfg.teacher_features.augment)})


def load_student(cfg, weights: Path, meta):
    return load_backbone(weights, img_size=meta.image_size, seed=cfg.seed, patch_size=cfg.benchmark.patch_size,
                         with_mask_token=True)


def check_token_grid(teacher_shape: tuple[int, int], student) -> None:
    token_count = teacher_shape[0]
    if token_count != 1 + student.num_patches:
        raise ConfigError(f"token grids differ: teacher has {token_count - 1} patches, student "
                          f"{student.num_patches}; both must use the benchmark's patch_size")


def initial_report(cfg, method_name: str, student, source: TeacherSource, device) -> tuple[dict, dict]:
    """The fidelity report's head (the student before stage 1: its probe, and its tokens for the CKA to the
    initialisation after each phase)."""
    report: dict = {"method": method_name, "student": cfg.student_name, "seed": cfg.train_seed, **source.info,
                    "init_probe": backbone_report(student, source.held, cfg.evaluate.batch_size, device),
                    "phases": {}}
    init_tokens = {domain: fidelity_mod.tokens(student, ds, cfg.evaluate.batch_size, device)
                   for domain, (ds, _) in source.held.items()}
    return report, init_tokens


def run_phases(cfg, method: LabelFreeMethod, method_name: str, plan, splits: dict, source: TeacherSource, student,
               meta, stage, report: dict, init_tokens: dict):
    """Phase 1a then 1b, each with fresh heads, optimiser and schedule, then its fidelity check; a phase finished
    before a restart is taken from the resume folder. Returns (distilled student, steps in total)."""
    acc, resume = stage.acc, stage.resume
    total_steps = 0
    for number, (key, domain, epochs) in enumerate(plan):
        phase = "1a" if key == "generic" else "1b"
        done = resume / f"{phase}.done"
        if done.is_dir():  # finished before a restart: take its student and its report
            student = load_student(cfg, done, meta).to(acc.device)
            report["phases"][phase] = io.read_json(done / "phase.json")
            total_steps += report["phases"][phase]["steps"]
            log.info("phase %s: taken from %s", phase, done)
            continue
        trained, steps = train_phase(cfg, method, method_name, number, phase, key, epochs, splits[key],
                                     source.teachers[key], student, stage)
        total_steps += steps
        result = phase_fidelity(cfg, method, trained, phase, key, domain, epochs, steps, source, meta, acc.device,
                                init_tokens)
        log_fidelity(method_name, phase, result, stage.live, total_steps)
        report["phases"][phase] = result
        student = trained.student
        if acc.is_main_process and number + 1 < len(plan):
            with io.atomic_path(done, is_dir=True) as tmp:
                save_backbone(tmp, student, cfg.student, meta.image_size, {})
                io.write_json(tmp / "phase.json", result)
            shutil.rmtree(resume / phase, ignore_errors=True)  # its snapshots are superseded by `done`
        acc.wait_for_everyone()
    return student, total_steps


def train_phase(cfg, method: LabelFreeMethod, method_name: str, number: int, phase: str, key: str, epochs: int,
                dataset, teacher, student, stage):
    """One phase's training: fresh heads (seeded per run and phase), AdamW, the cosine schedule. Returns
    (the trained stage-1 module, its steps)."""
    d, seed, acc = cfg.distill, cfg.train_seed, stage.acc
    torch.manual_seed(seed + number)  # fresh heads, deterministic per run and phase
    module = method.stage1_module(student, source_width(teacher))
    optimizer = torch.optim.AdamW(stage1_param_groups(module, d, phase))
    step = targets_step(teacher, seed, method.mask_ratio, student.num_patches, acc.device)
    steps = train.fit(acc=acc, module=module, optimizer=optimizer, phases=[train.Phase(key, dataset, epochs)],
                      batch_size=d.batch_size, step_fn=step, min_lr_ratio=d.min_lr / d.lr, seed=seed,
                      warmup_steps=d.warmup_steps, ema=d.ema, resume_dir=stage.resume / phase,
                      checkpoint_every=d.checkpoint_every, live=stage.live, desc=f"distill {method_name} {phase}",
                      metric_prefix=f"train/{phase}/")
    return acc.unwrap_model(module), steps


def source_width(teacher) -> int:
    return teacher.token_shape()[1]


def phase_fidelity(cfg, method: LabelFreeMethod, trained, phase: str, key: str, domain: str, epochs: int,
                   steps: int, source: TeacherSource, meta, device, init_tokens: dict) -> dict:
    """A phase's fidelity check: each term against its constant-mean baseline on every held-out domain (1a: where
    its heads are chosen, held-out generic and source), the backbone's probe and CKAs, the QSD routing."""
    batch = cfg.evaluate.batch_size
    constant = source.constant(key)
    result = {"split": f"{domain}/train", "epochs": epochs, "steps": steps, "domains": {}}
    for held_domain, (ds, held_cache) in source.held.items():
        if phase == "1a" and held_domain not in ("generic", meta.source):
            continue  # 1a's heads are checked where they are chosen: held-out generic and source
        result["domains"][held_domain] = fidelity_mod.measure(trained, ds, held_cache, constant, method.mask_ratio,
                                                              batch, device=device)
    result["probe"] = backbone_report(trained.student, source.held, batch, device, init_tokens)
    result["routing"] = {held_domain: fidelity_mod.routing(trained, ds, held_cache, method.mask_ratio, batch,
                                                           device=device)
                         for held_domain, (ds, held_cache) in source.held.items()
                         if held_domain in ("generic", meta.source)}
    return result


def write_stage1(tmp: Path, cfg, method_name: str, student, meta, plan, total_steps: int, source: TeacherSource,
                 report: dict) -> None:
    save_backbone(tmp, student, cfg.student, meta.image_size,
                  {"method": method_name, "teacher": cfg.teacher_name, "seed": cfg.train_seed, "steps": total_steps,
                   "budget": cfg.budget_multiplier, "phases": [dict(split=k, epochs=e) for k, _, e in plan],
                   **source.info})
    io.write_json(tmp / "fidelity.json", report)


def targets_step(teacher, run_seed: int, mask_ratio: float, num_patches: int, device):
    """The step function of stage 1 (also what ``gkd bench`` times). Each sample's own generator, seeded by
    (run seed, epoch, sample), first draws its view — ``teacher`` (``features.CachedTeacher`` or
    ``OnlineTeacher``) renders it and returns the teacher's tokens on it — then its first-half mask; the
    module gets that one view tensor and those tokens, and returns its loss terms."""
    def step(module, batch, _phase, epoch):
        images, _, idx = batch
        rngs = train.sample_rngs(run_seed, epoch, idx)
        x, targets = teacher(images, idx, rngs, device)
        mask = first_half_mask(rngs, num_patches, mask_ratio).to(device)
        return module(x, targets["tokens"], mask)
    return step


def stage1_step(cache: features.TeacherCache, views_cfg, data_seed: int, run_seed: int, mask_ratio: float,
                num_patches: int, device):
    """The cache-mode step function, from the cache and the views it holds."""
    return targets_step(features.CachedTeacher(cache, views_cfg, data_seed), run_seed, mask_ratio, num_patches, device)


def stage1_param_groups(module, d, phase: str = "1a") -> list[dict]:
    """AdamW groups of a stage-1 module: the student at ``lr`` (in phase 1b at ``source_lr`` when it is set),
    the fresh heads at ``head_lr`` (or ``lr``). The min-lr ratio of the schedule applies to every group."""
    named = list(module.named_parameters())
    student = [(n, p) for n, p in named if n.startswith("student.")]
    heads = [(n, p) for n, p in named if not n.startswith("student.")]
    student_lr = d.source_lr if phase == "1b" and d.source_lr is not None else d.lr
    held = [dict(g, hold_steps=d.head_warmup_steps) for g in train.param_groups(student, student_lr, d.weight_decay)]
    return held + train.param_groups(heads, d.lr if d.head_lr is None else d.head_lr, d.weight_decay)


def online_heldout(acc, teacher: features.OnlineTeacher, heldout: dict, directory: Path, cfg) -> dict:
    """Online mode: the held-out tokens of the fidelity check, computed once at the start with the online
    teacher's own ``signals`` into a cache of the same format (fp16, written and read by the same code as
    teacher_features'), so both modes score the student against the same numbers. Rebuilt on every start
    (a restart may follow a change of teacher); the folder goes with the resume folder."""
    tf = cfg.teacher_features
    if acc.is_main_process:
        shutil.rmtree(directory, ignore_errors=True)
    acc.wait_for_everyone()
    held = {}
    for domain, (ds, split) in heldout.items():
        target = directory / features.heldout_key(domain)
        if acc.is_main_process:
            target.mkdir(parents=True)
        acc.wait_for_everyone()
        shapes = features.extract(teacher.signals, ds, target, views_cfg=None, seed=cfg.seed, batch_size=tf.batch_size,
                                  shard_size=tf.shard_size, desc=f"teacher on held-out {domain}", device=acc.device,
                                  rank=acc.process_index, world=acc.num_processes)
        shapes = [s for s in acc.gather_for_metrics([shapes], use_gather_object=True) if s][0]
        if acc.is_main_process:
            features.write_index(target, len(ds), 1, tf.shard_size, shapes,
                                 {"teacher": cfg.teacher_name, "split": f"{domain}/{split}", "mode": "online"})
        acc.wait_for_everyone()
        held[domain] = (ds, features.TeacherCache(target).check(len(ds), 1, f"{domain}/{split}"))
    return held


BASELINE_STREAM = 0xBA5E  # the baseline's views come from generators [seed, this, image]: never a training step's


@torch.no_grad()
def online_constant(acc, teacher: features.OnlineTeacher, dataset, seed: int, batch_size: int) -> dict[str, torch.Tensor]:
    """Online counterpart of ``fidelity.constant_predictions``: the teacher's mean CLS and mean patch token
    over one online view of every training image (images split over the processes, sums reduced)."""
    n = len(dataset)
    mine = list(range(acc.process_index, n, acc.num_processes))
    sums = torch.zeros(2, teacher.teacher.embed_dim, device=acc.device, dtype=torch.float64)
    for start in range(0, len(mine), batch_size):
        chunk = mine[start:start + batch_size]
        images = torch.stack([dataset[i][0] for i in chunk])
        rngs = [np.random.default_rng([seed, BASELINE_STREAM, i]) for i in chunk]
        _, targets = teacher(images, torch.tensor(chunk), rngs, acc.device)
        tokens = targets["tokens"].double()
        sums += torch.stack([tokens[:, 0].sum(0), tokens[:, 1:].mean(1).sum(0)])
    sums = acc.reduce(sums, reduction="sum") / n
    return {"cls": sums[0].float().cpu(), "patch": sums[1].float().cpu()}


def backbone_report(student, held: dict, batch_size: int, device, init_tokens: dict | None = None
                    ) -> dict[str, dict[str, float]]:
    """Per held-out domain, from the backbone alone (no heads): the linear-probe R² from the student's patch tokens
    to the teacher's, their linear CKA with the teacher's, and (after a phase) with the student's own tokens before
    stage 1 — how far stage 1 moved the representation (``gkd.fidelity``)."""
    out = {}
    for domain, (ds, held_cache) in held.items():
        mine = fidelity_mod.tokens(student, ds, batch_size, device)
        teacher = held_cache.get("tokens", np.arange(len(ds)))
        out[domain] = {"probe_patch": fidelity_mod.probe_r2(mine, teacher),
                       "cka_teacher": fidelity_mod.patch_cka(mine, teacher.float())}
        if init_tokens is not None:
            out[domain]["cka_init"] = fidelity_mod.patch_cka(mine, init_tokens[domain])
    return out


def log_fidelity(method: str, phase: str, result: dict, live, step: int) -> None:
    """One line per held-out domain: each term's value and its constant-mean baseline, R², the probe's R²."""
    for domain, terms in result["domains"].items():
        probe = result.get("probe", {}).get(domain, {})
        routing = result.get("routing", {}).get(domain, {})
        log.info("%s %s fidelity on held-out %s: %s; linear probe R² (patch) %.2f; CKA to the initialisation %.3f, "
                 "to the teacher %.3f%s", method, phase, domain,
                 "; ".join(f"{t} {v['mse']:.3f} (baseline {v['baseline']:.3f}, R² {v['r2']:.2f})"
                           for t, v in terms.items()), probe.get("probe_patch", float("nan")),
                 probe.get("cka_init", float("nan")), probe.get("cka_teacher", float("nan")),
                 "".join(f"; QSD {h} attention entropy {r['entropy']:.2f} of its maximum, largest weight "
                         f"{r['max_weight']:.2f}" for h, r in routing.items()))
        if live is not None:
            live.step = step
            for t, v in terms.items():
                live.log_metric(f"eval/{phase}/{domain}/{t}_r2", v["r2"], plot=False)
                live.log_metric(f"eval/{phase}/{domain}/{t}_mse", v["mse"], plot=False)
                live.log_metric(f"eval/{phase}/{domain}/{t}_baseline", v["baseline"], plot=False)


def main(argv=None) -> None:
    p = common.parser(__doc__.splitlines()[0], selectors=("benchmark", "teacher", "student"), run=True)
    p.add_argument("--method", required=True)
    p.input("--data", required=True, type=Path)
    p.input("--student-weights", required=True, type=Path, help="student initialisation (student_weights)")
    p.input("--features", type=Path, default=None, help="teacher cache (teacher_features.mode: cache)")
    p.input("--teacher-weights", type=Path, default=None,
                   help="the frozen teacher, run in this process (teacher_features.mode: online)")
    p.output("--out", required=True, type=Path)
    p.output("--live", type=Path, default=None)
    args = p.parse_args(argv)
    cfg = common.setup(args, READS, ("benchmark", "teacher", "student"))
    run(cfg, args.method, args.data, args.student_weights, args.out, args.live, features_dir=args.features,
        teacher_dir=args.teacher_weights)


if __name__ == "__main__":
    common.run_main(main)
