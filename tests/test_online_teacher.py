"""`teacher_features.mode: online`: stage 1 runs the frozen teacher itself, on the augmented view the student
gets — the same targets as the cache for the same view, deterministic under a seed, and no cache in the DAG."""
from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
import torch
import yaml

from gkd.config import AugmentConfig, ConfigError, from_dict
from gkd.data import views

AUGMENT = AugmentConfig(crop_scale=[0.08, 1.0], crop_ratio=[0.75, 4 / 3], hflip=0.5, randaug_ops=2,
                        randaug_magnitude=9.0, randaug_magnitude_std=0.5, erasing=0.25)


def online_params(ws, tmp_path, **augment) -> str:
    params = yaml.safe_load((ws / "params.yaml").read_text())
    params["teacher_features"]["mode"] = "online"
    params["teacher_features"]["augment"].update(augment)
    path = tmp_path / "online.yaml"
    path.write_text(yaml.safe_dump(params))
    return str(path)


def train_images(ws, n: int):
    from gkd.data.prepared import SegmentationSplit
    split = SegmentationSplit(ws / "data", "sim", "train", with_labels=False)
    return torch.stack([split[i][0] for i in range(n)])


def online_teacher(ws, names=("tokens",)):
    from gkd.features import OnlineTeacher
    from gkd.models.artifacts import load_backbone
    return OnlineTeacher(load_backbone(ws / "teacher", img_size=56, patch_size=14), AUGMENT, 56, names)


def test_online_targets_equal_cached_targets_for_the_same_view(ws, tiny_cfg):
    """The online teacher on a view the cache holds gives the cached rows of every signal it caches (to the
    cache's fp16 precision): both modes compute targets with the same function."""
    from gkd.features import TeacherCache
    cache = TeacherCache(ws / "feat" / "train")
    names = ("tokens", "shallow", "last")
    teacher = online_teacher(ws, names)
    idx = torch.arange(6).repeat_interleave(4)                    # every view of six images
    view = torch.arange(4).repeat(6)
    x = views.render(train_images(ws, 6).repeat_interleave(4, dim=0), idx, view, tiny_cfg.views, tiny_cfg.seed)
    online = teacher.signals(x)
    for name in names:
        cached = cache.get(name, idx.numpy(), view.numpy())
        assert online[name].shape == cached.shape, name
        # fp16 keeps 11 significant bits: one rounding step, plus fp32 noise of another batch composition
        tolerance = 2 ** -10 * cached.abs() + 1e-4 * cached.abs().max()
        assert ((online[name] - cached).abs() <= tolerance).all(), name


def test_online_views_are_deterministic_and_both_models_see_the_same_tensor(ws):
    """One augmentation per sample from its own generator: the same (seed, epoch, sample) gives the same view
    whatever the batch, the teacher's targets are the teacher on exactly the tensor the student gets."""
    from gkd.methods.gkd import GKD, GKDOptions
    from gkd.models.artifacts import load_backbone
    from gkd.stages.distill import targets_step
    teacher = online_teacher(ws)
    images, idx = train_images(ws, 8), torch.arange(8)
    seen = []

    def record(x, tokens, mask):  # stands in for the stage-1 module: keeps what the step gives it
        seen.append((x, tokens, mask))
        return {}
    step = targets_step(teacher, 7, 0.5, 16, "cpu")
    step(record, (images, None, idx), "train", 3)
    step(record, (images, None, idx), "train", 3)
    step(record, (images[4:6], None, idx[4:6]), "train", 3)      # another batch: the same two views
    step(record, (images, None, idx), "train", 4)                # another epoch: other views
    (x, tokens, mask), again, part, other = seen
    assert torch.equal(x, again[0]) and torch.equal(tokens, again[1]) and torch.equal(mask, again[2])
    assert torch.equal(part[0], x[4:6]) and torch.equal(part[1], tokens[4:6])
    assert not torch.equal(other[0], x)
    plain = images.float() / 255
    assert all(not torch.equal(x[i], plain[i]) for i in range(8))   # cropped, resized, flipped, ...
    with torch.no_grad():
        assert torch.equal(tokens, teacher.teacher.forward_tokens(x, with_levels=False)[0])

    # the same parameters render the same view, wherever they are drawn
    rngs = lambda: [np.random.default_rng([7, 3, i]) for i in range(8)]  # noqa: E731
    plans = [views.draw(r, AUGMENT, 56, 56, 56) for r in rngs()]
    assert plans == [views.draw(r, AUGMENT, 56, 56, 56) for r in rngs()]
    assert torch.equal(torch.stack([views.apply(plain[i], p, 56) for i, p in enumerate(plans)]), x)
    assert {op for p in plans for op, _ in p.ops} and any(p.flip for p in plans) and any(not p.flip for p in plans)

    # inside the real stage-1 module: the student's unmasked input is the teacher's input, pixel for pixel
    student = load_backbone(ws / "student", img_size=56, patch_size=14, with_mask_token=True)
    module = GKD(GKDOptions()).stage1_module(student, teacher.token_shape()[1])
    inputs = {}

    def keep(role, bb):  # the patch embedding sees (pixels - mean) / std of its own model
        def hook(_module, args):
            inputs.setdefault(role, args[0] * bb.std + bb.mean)  # first call only; returns None: input unchanged
        return hook
    hooks = [teacher.teacher.vit.patch_embed.register_forward_pre_hook(keep("teacher", teacher.teacher)),
             student.vit.patch_embed.register_forward_pre_hook(keep("student", student))]
    terms = step(module, (images, None, idx), "train", 3)
    for h in hooks:
        h.remove()
    assert torch.isfinite(terms["loss"])
    assert torch.allclose(inputs["teacher"], x, atol=1e-6)
    assert torch.allclose(inputs["student"][:8], inputs["teacher"], atol=1e-6)


def test_tiny_online_distill_runs_moves_weights_and_needs_no_cache(ws, tmp_path, capsys):
    from safetensors.torch import load_file
    from gkd.stages import distill
    from gkd.stages.common import run_main
    params = online_params(ws, tmp_path)
    out = tmp_path / "stage1"
    common = ["--params", params, "--method", "gkd", "--data", str(ws / "data"), "--student-weights",
              str(ws / "student"), "--out", str(out)]
    # a command declared for the cache (a stale dvc.yaml) is refused in one line, before any work
    with pytest.raises(SystemExit) as stop:
        run_main(distill.main, common + ["--features", str(ws / "feat")])      # as `python -m` runs a stage
    assert stop.value.code == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "teacher_features.mode is 'online'" in err and "gkd dag" in err
    assert not out.exists()

    distill.main(common + ["--teacher-weights", str(ws / "teacher"), "--live", str(tmp_path / "live")])
    before, after = load_file(ws / "student" / "backbone.safetensors"), load_file(out / "backbone.safetensors")
    moved = [k for k in before if not torch.equal(before[k], after[k])]
    assert len(moved) > len(before) // 2, moved
    meta = json.loads((out / "backbone.json").read_text())
    assert meta["teacher_mode"] == "online" and meta["augment"]["randaug_ops"] == 2
    report = json.loads((out / "fidelity.json").read_text())
    assert report["teacher_mode"] == "online" and list(report["phases"]) == ["1a", "1b"]
    for terms in report["phases"]["1b"]["domains"].values():
        assert all(np.isfinite([t["mse"], t["baseline"], t["r2"]]).all() for t in terms.values())
    assert not (tmp_path / ".stage1.resume").exists()        # the held-out teacher tokens went with it


def test_dag_reads_the_cache_for_stage1_only_in_cache_mode(tiny_cfg):
    from conftest import tiny_params
    from gkd import dag

    def stages(mode=None, adapter=None, methods=None):
        params = tiny_params()
        if mode:
            params["teacher_features"]["mode"] = mode
        if methods:
            params["methods"] = methods
        cfg = from_dict(params)
        if adapter:  # what `auto` resolves by; the tiny models are only valid on the synthetic benchmark
            cfg = dataclasses.replace(cfg, benchmark=dataclasses.replace(cfg.benchmark, adapter=adapter))
        return cfg, {s.name: s for s in dag.stages(cfg, dag.shapes_of(cfg))}

    cfg, cached = stages()
    assert cfg.teacher_mode == "cache" and dag.FEATURES in cached["distill-gkd"].deps
    # the teacher too, so `dvc exp run -S benchmark=<an online preset>` works on this dvc.yaml
    assert dag.TEACHER in cached["distill-gkd"].deps and "teacher_features" in cached["distill-gkd"].params
    assert "teacher_features" in cached and "views" in cached["distill-gkd"].params

    assert stages(mode="auto")[0].teacher_mode == "cache"  # auto: the synthetic benchmark caches
    for cfg, online in (stages(mode="online"), stages(mode="auto", adapter="real")):
        assert cfg.teacher_mode == "online"
        distill = online["distill-gkd"]
        assert dag.FEATURES not in distill.deps and dag.TEACHER in distill.deps
        assert ("--teacher-weights", dag.TEACHER) in distill.flags and "teacher_features" in distill.params
        assert "teacher_features" not in online                  # nothing else reads the cache: not built
        assert all(dag.FEATURES not in s.deps for s in online.values())
    assert stages(mode="cache", adapter="real")[0].teacher_mode == "cache"  # an explicit mode wins over auto

    # a feature-KD method still reads the cache in its task training; a logit-KD method reads teacher_task only
    _, with_kd = stages(mode="online", methods=["vanilla_kd", "vitkd", "gkd"])
    assert "teacher_features" in with_kd and dag.FEATURES in with_kd["adapt-vitkd"].deps
    assert dag.FEATURES not in with_kd["distill-gkd"].deps and dag.FEATURES not in with_kd["adapt-vanilla_kd"].deps
    _, logit_only = stages(mode="online", methods=["vanilla_kd", "gkd"])
    assert "teacher_features" not in logit_only and dag.TEACHER_TASK in logit_only["adapt-vanilla_kd"].deps


def test_bad_teacher_mode_or_augmentation_is_one_clear_error():
    from conftest import tiny_params
    for section, key, value, message in [
            ("teacher_features", "mode", "onlin", "unknown teacher_features.mode 'onlin'; valid choices: auto, cache, online"),
            ("synthetic", "teacher_mode", "online", "benchmarks.synthetic.teacher_mode: the key is gone; stage 1's "
                                                      "teacher is set by teacher_features.mode alone"),
            ("augment", "crop_scale", [0.5, 2.0], "teacher_features.augment.crop_scale must be [min, max]"),
            ("augment", "erasing", 1.5, "teacher_features.augment.erasing is a probability in [0, 1], got 1.5")]:
        params = tiny_params()
        node = {"teacher_features": params["teacher_features"], "synthetic": params["benchmarks"]["synthetic"],
                "augment": params["teacher_features"]["augment"]}[section]
        node[key] = value
        with pytest.raises(ConfigError) as err:
            from_dict(params)
        assert message in str(err.value) and "\n" not in str(err.value)


def test_bench_reports_both_modes(tmp_path):
    from gkd import bench
    figures = bench.framework_overhead(28, 2, 1, tmp_path)
    modes = figures["stage1_modes"]
    assert modes["images_per_s_cache"] > 0 and modes["images_per_s_online"] > 0
    assert modes["online_augment_images_per_s"] > 0
    assert "mode online" in bench.summary({**figures, "stage1_cache": {"speedup": 1, "flop_ratio": 1,
                                                                        "first_loss_cached": 0,
                                                                        "first_loss_recompute": 0},
                                           "inference": {"ratio": 1}, "cache": {"bytes_per_image": 1,
                                                                                 "read_images_per_s": 1}})
