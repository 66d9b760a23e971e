"""Stage `adapt` (stage 2 / task training): a segmenter trained on source labels only.

What it starts from and what it trains depends on the method: GKD's stage-1 backbone stays frozen and
only the decoder learns; Proteus' stage-1 backbone is fine-tuned end to end; Student-only and the
one-stage KD baselines train the student (seeded, identical initialisation for every method) end to
end, the KD ones with their distillation terms on cached teacher outputs.
"""
from __future__ import annotations

import logging
from pathlib import Path

from gkd import train
from gkd.config import ConfigError
from gkd.data.prepared import read_meta
from gkd.methods import build_method
from gkd.task import fit_segmenter
from gkd.features import TeacherCache
from gkd.models.artifacts import load_backbone, new_segmenter, save_segmenter
from gkd.stages import common

log = logging.getLogger(__name__)
READS = common.Reads("seed", "benchmark.patch_size", "views", "adapt", "runtime", methods="selected")


def run(cfg, method_name: str, data: Path, init: Path, out: Path, teacher_task: Path | None,
        features: Path | None, live_dir: Path | None) -> None:
    method = build_method(cfg, method_name)
    if "logits" in method.teacher_inputs and teacher_task is None:
        raise ConfigError(f"method {method_name!r} needs teacher logits: pass --teacher-task")
    if set(method.teacher_inputs) - {"logits"} and features is None:
        raise ConfigError(f"method {method_name!r} needs teacher features: pass --features")
    meta = read_meta(data)
    a = cfg.adapt
    with train.StageRun(cfg.runtime, cfg.train_seed, out, live_dir) as run:
        backbone = load_backbone(init, img_size=meta.image_size, seed=cfg.seed, patch_size=cfg.benchmark.patch_size)
        model = new_segmenter(backbone, a.decoder, a.decoder_dim, meta.num_classes)
        caches = {name: TeacherCache(teacher_task / "logits" if name == "logits" else features / "train")
                  for name in method.teacher_inputs}
        teacher_shapes = {k: c.shape(k) for k, c in caches.items()}
        extra = method.task_module(student_dim=backbone.embed_dim, num_classes=meta.num_classes,
                                   teacher_shapes=teacher_shapes, grid=backbone.grid)
        frozen = method.frozen_backbone()
        trained, steps = fit_segmenter(cfg, run.acc, model, method, frozen=frozen, data=data, source=meta.source,
                                       teacher=caches, extra=extra, resume_dir=run.resume, live=run.live,
                                       desc=f"adapt {method_name}")
        run.save(lambda tmp: save_segmenter(
            tmp, trained, meta.image_size, a.decoder, a.decoder_dim, meta.classes,
            {"role": "student", "method": method_name, "student": cfg.student_name,
             "teacher": cfg.teacher_name if (method.stage1 or caches) else None, "frozen_backbone": frozen,
             "steps": steps, "benchmark": cfg.benchmark_name, "seed": cfg.train_seed, "budget": cfg.budget_multiplier},
            palette=meta.palette))


def main(argv=None) -> None:
    p = common.parser(__doc__.splitlines()[0], selectors=("benchmark", "teacher", "student"), run=True)
    p.add_argument("--method", required=True)
    p.input("--data", required=True, type=Path)
    p.output("--out", required=True, type=Path)
    p.input("--init", required=True, type=Path,
                   help="backbone to start from: the method's stage-1 output, or the student initialisation")
    p.input("--teacher-task", type=Path, default=None, help="teacher_task artifact (logit-KD methods)")
    p.input("--features", type=Path, default=None, help="teacher feature cache (feature-KD methods)")
    p.output("--live", type=Path, default=None)
    args = p.parse_args(argv)
    cfg = common.setup(args, READS, ("benchmark", "teacher", "student"))
    run(cfg, args.method, args.data, args.init, args.out, args.teacher_task, args.features, args.live)


if __name__ == "__main__":
    common.run_main(main)
