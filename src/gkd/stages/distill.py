"""Stage `distill` (stage 1): label-free representation distillation of the student from cached teacher tokens.

Two phases, as the official code's two runs, each with fresh heads, a fresh optimiser and its own
cosine schedule: 1a on the generic stream (if the benchmark has one and ``distill.generic_epochs`` > 0),
then 1b on the source training images — images only, no labels. The teacher is never run here: the
target of every step is the cached teacher output of exactly the view the student gets
(``gkd.data.views``).

Each phase ends with the fidelity check (``gkd.fidelity``): every loss term on held-out images
of every cached domain, next to the constant-mean baseline and as R² of the teacher's tokens. The
stage writes it as ``fidelity.json`` beside the distilled backbone.
"""
from __future__ import annotations

import logging
import shutil
from pathlib import Path

import numpy as np
import torch

from gkd import features, io, train
from gkd.data import views
from gkd.data.prepared import SegmentationSplit, read_meta
from gkd.methods import build_method
from gkd import fidelity as fidelity_mod
from gkd.methods.masking import first_half_mask
from gkd.errors import ConfigError
from gkd.models.artifacts import load_backbone, save_backbone
from gkd.stages import common

log = logging.getLogger(__name__)


def phases(cfg, meta) -> list[tuple[str, str, int]]:
    """(cache key, domain, epochs) of the phases this config runs: 1a generic, 1b source."""
    d = cfg.distill
    out = []
    if "generic" in meta.splits and d.generic_epochs > 0:
        out.append(("generic", "generic", d.generic_epochs))
    if d.source_epochs > 0:
        out.append(("train", meta.source, d.source_epochs))
    if not out:
        raise ConfigError("distill: no phase to run (generic_epochs and source_epochs are both 0)")
    return out


def run(cfg, method_name: str, data: Path, student_weights: Path, features_dir: Path, out: Path,
        live_dir: Path | None) -> None:
    method = build_method(cfg, method_name)
    if not method.stage1:
        raise ConfigError(f"method {method_name!r} has no stage 1 (distill); it trains in `adapt` only")
    meta = read_meta(data)
    plan = phases(cfg, meta)
    v = cfg.views
    splits = {key: SegmentationSplit(data, domain, "train", with_labels=False) for key, domain, _ in plan}
    caches = {key: features.TeacherCache(features_dir / key).check(len(splits[key]), v.count, f"{domain}/train")
              for key, domain, _ in plan}
    held = {}
    for domain, split in features.heldout_splits(meta):
        ds = features.CenterCrop(SegmentationSplit(data, domain, split, with_labels=False, memo_bytes=0),
                                 meta.image_size)
        held[domain] = (ds, features.TeacherCache(features_dir / features.heldout_key(domain))
                        .check(len(ds), 1, f"{domain}/{split}"))

    seed = cfg.train_seed
    with train.StageRun(cfg.runtime, seed, out, live_dir) as run:
        acc, resume, live = run.acc, run.resume, run.live
        student = load_backbone(student_weights, img_size=meta.image_size, seed=cfg.seed,
                                patch_size=cfg.benchmark.patch_size, with_mask_token=True)
        first = caches[plan[0][0]]
        teacher_dim = first.shape("tokens")[-1]
        if first.shape("tokens")[0] != 1 + student.num_patches:
            raise ConfigError(f"token grids differ: teacher cache has {first.shape('tokens')[0] - 1} patches, "
                              f"student {student.num_patches}; both must use the benchmark's patch_size")
        d = cfg.distill
        student.to(acc.device)
        report: dict = {"method": method_name, "student": cfg.student_name, "seed": seed,
                        "init_probe": probe_report(student, held, cfg.evaluate.batch_size, acc.device),
                        "phases": {}}
        total_steps = 0
        for number, (key, domain, epochs) in enumerate(plan):
            phase = "1a" if key == "generic" else "1b"
            done = resume / f"{phase}.done"
            if done.is_dir():  # finished before a restart: take its student and its report
                student = load_backbone(done, img_size=meta.image_size, seed=cfg.seed,
                                        patch_size=cfg.benchmark.patch_size, with_mask_token=True).to(acc.device)
                report["phases"][phase] = io.read_json(done / "phase.json")
                total_steps += report["phases"][phase]["steps"]
                log.info("phase %s: taken from %s", phase, done)
                continue
            torch.manual_seed(seed + number)  # fresh heads, deterministic per run and phase
            module = method.stage1_module(student, teacher_dim)
            optimizer = torch.optim.AdamW(train.param_groups(list(module.named_parameters()), d.lr, d.weight_decay))
            cache = caches[key]
            step = stage1_step(cache, v, cfg.seed, seed, method.mask_ratio, student.num_patches, acc.device)
            steps = train.fit(acc=acc, module=module, optimizer=optimizer,
                              phases=[train.Phase(key, splits[key], epochs)], batch_size=d.batch_size, step_fn=step, min_lr_ratio=d.min_lr / d.lr, seed=seed,
                              resume_dir=resume / phase, checkpoint_every=d.checkpoint_every, live=live,
                              desc=f"distill {method_name} {phase}", metric_prefix=f"train/{phase}/")
            total_steps += steps
            trained = acc.unwrap_model(module)
            constant = fidelity_mod.constant_predictions(cache)
            result = {"split": f"{domain}/train", "epochs": epochs, "steps": steps, "domains": {}}
            for held_domain, (ds, held_cache) in held.items():
                if phase == "1a" and held_domain not in ("generic", meta.source):
                    continue  # 1a's heads are checked where they are chosen: held-out generic and source
                result["domains"][held_domain] = fidelity_mod.measure(
                    trained, ds, held_cache, constant, method.mask_ratio, cfg.evaluate.batch_size, device=acc.device)
            result["probe"] = probe_report(trained.student, held, cfg.evaluate.batch_size, acc.device)
            log_fidelity(method_name, phase, result, live, total_steps)
            report["phases"][phase] = result
            student = trained.student
            if acc.is_main_process and number + 1 < len(plan):
                with io.atomic_path(done, is_dir=True) as tmp:
                    save_backbone(tmp, student, cfg.student, meta.image_size, {})
                    io.write_json(tmp / "phase.json", result)
                shutil.rmtree(resume / phase, ignore_errors=True)  # its snapshots are superseded by `done`
            acc.wait_for_everyone()

        def write(tmp: Path) -> None:
            save_backbone(tmp, student, cfg.student, meta.image_size,
                          {"method": method_name, "teacher": cfg.teacher_name, "seed": seed, "steps": total_steps,
                           "budget": cfg.budget_multiplier, "phases": [dict(split=k, epochs=e) for k, _, e in plan]})
            io.write_json(tmp / "fidelity.json", report)
        run.save(write)


def stage1_step(cache: features.TeacherCache, views_cfg, data_seed: int, run_seed: int, mask_ratio: float,
                num_patches: int, device):
    """The step function of stage 1 (also what ``gkd bench`` times): one view per sample, its cached teacher
    tokens, the first-half mask; returns the module's loss terms."""
    def step(module, batch, _phase, epoch):
        images, _, idx = batch
        rngs = train.sample_rngs(run_seed, epoch, idx)
        view = views.choose(rngs, views_cfg.count)
        x = views.render(images, idx, view, views_cfg, data_seed).to(device)
        tokens = cache.get("tokens", idx.numpy(), view.numpy()).to(device)
        mask = first_half_mask(rngs, num_patches, mask_ratio).to(device)
        return module(x, tokens, mask)
    return step


def probe_report(student, held: dict, batch_size: int, device) -> dict[str, dict[str, float]]:
    """Linear-probe R² from the student's patch tokens to the teacher's, per held-out domain (gkd.fidelity)."""
    return {domain: {"probe_patch": fidelity_mod.probe_r2(fidelity_mod.tokens(student, ds, batch_size, device),
                                                          held_cache.get("tokens", np.arange(len(ds))))}
            for domain, (ds, held_cache) in held.items()}


def log_fidelity(method: str, phase: str, result: dict, live, step: int) -> None:
    """One line per held-out domain: each term's value and its constant-mean baseline, R², the probe's R²."""
    for domain, terms in result["domains"].items():
        probe = result.get("probe", {}).get(domain, {})
        log.info("%s %s fidelity on held-out %s: %s; linear probe R² (patch) %.2f", method, phase, domain,
                 "; ".join(f"{t} {v['mse']:.3f} (baseline {v['baseline']:.3f}, R² {v['r2']:.2f})"
                           for t, v in terms.items()), probe.get("probe_patch", float("nan")))
        if live is not None:
            live.step = step
            for t, v in terms.items():
                live.log_metric(f"eval/{phase}/{domain}/{t}_r2", v["r2"], plot=False)
                live.log_metric(f"eval/{phase}/{domain}/{t}_mse", v["mse"], plot=False)
                live.log_metric(f"eval/{phase}/{domain}/{t}_baseline", v["baseline"], plot=False)


def main(argv=None) -> None:
    p = common.parser(__doc__.splitlines()[0], selectors=("benchmark", "teacher", "student"), run=True)
    p.add_argument("--method", required=True)
    p.add_argument("--data", required=True, type=Path)
    p.add_argument("--student-weights", required=True, type=Path, help="student initialisation (student_weights)")
    p.add_argument("--features", required=True, type=Path)
    p.add_argument("--out", required=True, type=Path)
    p.add_argument("--live", type=Path, default=None)
    args = p.parse_args(argv)
    cfg = common.setup(args, ("benchmark", "teacher", "student"))
    run(cfg, args.method, args.data, args.student_weights, args.features, args.out, args.live)


if __name__ == "__main__":
    common.run_main(main)
