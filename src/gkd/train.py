"""One training loop for every stage, in nanoGPT's shape with Accelerate in place of DDP boilerplate.

The trainable module's ``forward`` returns a dict of named loss terms (``loss`` is optimised, every
term is logged). The loop owns: deterministic data order (a permutation per (seed, epoch)), the
cosine learning-rate schedule (visible, per step), Accelerate ``save_state`` snapshots every N steps
and resume from the last one after a kill, and dvclive logging from the main process.
"""
from __future__ import annotations

import json
import logging
import math
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Sampler
from tqdm import tqdm

from gkd import io

log = logging.getLogger("gkd.train")


def seed_everything(seed: int) -> None:
    import random
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


class EpochSampler(Sampler):
    """A permutation that depends only on (seed, epoch): resumable and identical on every rank."""

    def __init__(self, n: int, seed: int):
        self.n, self.seed, self.epoch = n, seed, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return self.n

    def __iter__(self):
        return iter(np.random.default_rng([self.seed, self.epoch]).permutation(self.n).tolist())


def make_accelerator(runtime):
    """Accelerator with the params' precision (no | bf16 | fp16) and optional torch.compile (inductor).

    Frozen parameters have requires_grad=False and zero-weighted loss terms still reach their heads,
    so every trainable parameter gets a gradient each step: DDP needs no unused-parameter search.
    """
    from accelerate import Accelerator
    return Accelerator(mixed_precision=runtime.mixed_precision,
                       dynamo_backend="inductor" if runtime.compile else "no")


def cosine(step: int, total: int, base: float, floor: float, warmup: int = 0) -> float:
    """Cosine decay from ``base`` to ``floor`` at ``total``, after ``warmup`` linear steps (GKD's stage 1
    has none, as the paper; the crop-classification pretraining uses some)."""
    if step < warmup:
        return base * (step + 1) / warmup
    step, total = step - warmup, total - warmup
    return floor + 0.5 * (base - floor) * (1 + math.cos(math.pi * min(step, total) / max(total, 1)))


def param_groups(named: Sequence[tuple[str, torch.nn.Parameter]], lr: float, weight_decay: float) -> list[dict]:
    """AdamW groups: no weight decay on biases, norms, tokens and position embeddings."""
    decay, no_decay = [], []
    for name, p in named:
        if not p.requires_grad:
            continue
        (no_decay if p.ndim <= 1 or name.endswith(("pos_embed", "cls_token", "mask_token")) else decay).append(p)
    groups = [dict(params=decay, weight_decay=weight_decay), dict(params=no_decay, weight_decay=0.0)]
    return [dict(g, lr=lr, base_lr=lr) for g in groups if g["params"]]


class WeightAverage:
    """Exponential moving average of a module's floating-point parameters and buffers, with the usual bias
    correction at the start (decay min(d, (1 + t) / (10 + t)) at step t), so early averages are not pulled
    towards the initialisation. ``copy_to`` puts the average into the module. Registered for checkpointing,
    so a resumed run continues the same average."""

    def __init__(self, module: torch.nn.Module, decay: float):
        self.decay, self.steps = decay, 0
        self.shadow = {k: v.detach().clone() for k, v in module.state_dict().items() if v.dtype.is_floating_point}

    @torch.no_grad()
    def update(self, module: torch.nn.Module) -> None:
        self.steps += 1
        d = min(self.decay, (1 + self.steps) / (10 + self.steps))
        for k, v in module.state_dict().items():
            if k in self.shadow:
                self.shadow[k].mul_(d).add_(v.detach(), alpha=1 - d)

    @torch.no_grad()
    def copy_to(self, module: torch.nn.Module) -> None:
        state = module.state_dict()
        for k, v in self.shadow.items():
            state[k].copy_(v)

    def state_dict(self) -> dict:
        return {"steps": self.steps, "shadow": self.shadow}

    def load_state_dict(self, state: dict) -> None:
        self.steps = int(state["steps"])
        for k, v in state["shadow"].items():
            self.shadow[k].copy_(v)


@dataclass
class Phase:
    """``epochs`` passes over ``dataset``; ``name`` is handed to the step function (e.g. which cache)."""
    name: str
    dataset: Dataset
    epochs: int


def _save_state(acc, resume_dir: Path, step: int) -> None:
    """Snapshot to a temp folder, then rename: a kill mid-save leaves the previous snapshot intact."""
    tmp = resume_dir / f"state.tmp-{step}"
    acc.save_state(str(tmp))
    # save_state ends without a barrier and every rank writes its own RNG file into tmp: renaming before
    # the last rank is done loses that file or fails that rank's write (seen as a gloo "connection closed")
    acc.wait_for_everyone()
    if acc.is_main_process:
        (tmp / "step.json").write_text(json.dumps({"step": step}))
        final = resume_dir / "state"
        if final.exists():
            shutil.rmtree(final)
        os.replace(tmp, final)
    acc.wait_for_everyone()


def fit(*, acc, module: torch.nn.Module, optimizer: torch.optim.Optimizer, phases: list[Phase],
        batch_size: int, step_fn: Callable, min_lr_ratio: float, seed: int, resume_dir: Path | None,
        checkpoint_every: int, live=None, desc: str = "train", metric_prefix: str = "train/",
        warmup_steps: int = 0, ema: float = 0.0) -> int:
    """Train ``module`` over ``phases``; returns the number of optimiser steps taken in total.

    ``step_fn(module, batch, phase_name, epoch) -> dict`` computes the loss terms of one batch. ``ema`` > 0: the
    module ends with the exponential moving average of its weights over the steps (``WeightAverage``).
    """
    # save_state/load_state cover every object this accelerator prepared: forget an earlier fit's (stage 1's
    # phase 1a before 1b), or a resumed 1b would load 1a's heads and optimiser into its own
    acc.free_memory()
    acc._custom_objects.clear()  # free_memory keeps registered objects (an earlier phase's weight average)
    loaders = []
    for ph in phases:
        dl = DataLoader(ph.dataset, batch_size=batch_size, sampler=EpochSampler(len(ph.dataset), seed),
                        drop_last=True, num_workers=0)
        loaders.append(dl)
    module, optimizer, *loaders = acc.prepare(module, optimizer, *loaders)
    average = None
    if ema > 0:
        average = WeightAverage(acc.unwrap_model(module), ema)
        acc.register_for_checkpointing(average)
    plan = [(ph, dl, e) for ph, dl in zip(phases, loaders) for e in range(ph.epochs)]
    total = sum(len(dl) for _, dl, _ in plan)
    if total == 0:
        raise ValueError(f"{desc}: no training steps (datasets smaller than batch size {batch_size}?)")

    step = 0
    if resume_dir is not None and (resume_dir / "state" / "step.json").is_file():
        acc.load_state(str(resume_dir / "state"))
        step = json.loads((resume_dir / "state" / "step.json").read_text())["step"]
        log.warning("%s: resumed from step %d/%d (%s)", desc, step, total, resume_dir)

    bar = tqdm(total=total, initial=step, desc=desc, disable=not acc.is_main_process, mininterval=5)
    done = 0
    module.train()
    for phase, loader, epoch in plan:
        if done + len(loader) <= step:  # finished before the snapshot we resumed from
            done += len(loader)
            continue
        loader.set_epoch(epoch)
        skip = step - done
        batches = acc.skip_first_batches(loader, skip) if skip > 0 else loader
        for batch in batches:
            for group in optimizer.param_groups:  # a group may be held still for its first `hold_steps`
                group["lr"] = 0.0 if step < group.get("hold_steps", 0) else \
                    cosine(step, total, group["base_lr"], group["base_lr"] * min_lr_ratio, warmup_steps)
            terms = step_fn(module, batch, phase.name, epoch)
            optimizer.zero_grad(set_to_none=True)
            acc.backward(terms["loss"])
            optimizer.step()
            if average is not None:
                average.update(acc.unwrap_model(module))
            step += 1
            bar.update(1)
            if step % 10 == 0 or step in (1, total):
                logged = {k: acc.reduce(v.detach().float(), reduction="mean").item() for k, v in terms.items()}
                bar.set_postfix(loss=f"{logged['loss']:.4f}")
                if live is not None and acc.is_main_process:
                    live.step = step
                    for k, v in logged.items():
                        live.log_metric(f"{metric_prefix}{k}", v)
                    live.log_metric(f"{metric_prefix}lr", optimizer.param_groups[0]["lr"])
                    live.make_summary()
            if resume_dir is not None and checkpoint_every and step % checkpoint_every == 0 and step < total:
                _save_state(acc, resume_dir, step)
        done += len(loader)
    bar.close()
    if average is not None:
        average.copy_to(acc.unwrap_model(module))
    return total


class StageRun:
    """What every training stage shares, in one place: the accelerator, the seed, the resume folder next to
    the output, the dvclive logger, the atomic save of the artifact and the clean-up.

        with StageRun(cfg.runtime, seed, out, live_dir) as run:
            ... train with run.acc, resume_dir=run.resume, live=run.live ...
            run.save(lambda tmp: save_segmenter(tmp, ...))

    ``save`` writes on the main process only, into a temporary folder renamed to ``out`` when complete; on a
    clean exit the logger is closed, every process waits for the others and the snapshots are removed (an
    exception keeps them, for the restart).
    """

    def __init__(self, runtime, seed: int, out: Path, live_dir: Path | None = None):
        self.acc = make_accelerator(runtime)
        seed_everything(seed)
        self.out = Path(out)
        self.resume = self.out.with_name(f".{self.out.name}.resume")
        self.live = open_live(live_dir, resume=self.resume.exists()) if self.acc.is_main_process else None

    def __enter__(self) -> "StageRun":
        return self

    def save(self, write: Callable[[Path], None]) -> None:
        if self.acc.is_main_process:
            with io.atomic_path(self.out, is_dir=True) as tmp:
                write(tmp)

    def __exit__(self, kind, value, traceback) -> None:
        if kind is not None:
            return
        if self.live is not None:
            self.live.end()
        self.acc.wait_for_everyone()
        shutil.rmtree(self.resume, ignore_errors=True)


def open_live(directory: Path | None, resume: bool):
    """A dvclive logger writing only files (no git/DVC side effects); None where not wanted."""
    if directory is None:
        return None
    from dvclive import Live
    return Live(dir=str(directory), resume=resume, save_dvc_exp=False, dvcyaml=None, report=None)


def sample_rngs(seed: int, epoch: int, indices: torch.Tensor) -> list[np.random.Generator]:
    """One generator per *sample* (not per rank or batch): augmentation is independent of sharding."""
    return [np.random.default_rng([seed, epoch, int(i)]) for i in indices]
