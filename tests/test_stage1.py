"""Stage 1 sees what the teacher saw, reports whether it distilled, and runs as two fresh phases."""
from __future__ import annotations

import json

import numpy as np
import pytest
import torch
import yaml

from gkd.config import ViewsConfig
from gkd.data import views


def test_views_are_pure_functions_of_image_index_and_view_number():
    cfg = ViewsConfig(hflip=True, photometric=1, jitter=0.3)
    assert cfg.count == 4
    images = torch.randint(0, 256, (4, 3, 8, 8), dtype=torch.uint8)
    index, view = torch.tensor([5, 5, 5, 5]), torch.arange(4)
    x = views.render(images[[0, 0, 0, 0]], index, view, cfg, seed=0)
    plain = images[0].float() / 255
    assert torch.equal(x[0], plain) and torch.equal(x[1], plain.flip(-1))           # 0 plain, 1 mirrored
    assert not torch.allclose(x[2], plain) and not torch.allclose(x[3], x[2].flip(-1))  # own jitter per view
    assert torch.equal(views.render(images[[0]], index[:1], view[2:3], cfg, 0), x[2:3])  # same args, same view
    assert not torch.equal(views.render(images[[0]], torch.tensor([6]), view[2:3], cfg, 0), x[2:3])
    labels = torch.arange(16).view(1, 4, 4).repeat(4, 1, 1)
    assert torch.equal(views.render_labels(labels, view, cfg)[3], labels[0].flip(-1))
    assert ViewsConfig(hflip=False, photometric=0, jitter=0.0).count == 1


def test_stage1_target_is_the_teacher_on_the_students_own_flipped_and_jittered_view(ws, tmp_path):
    """With mirrored and photometric views cached, every target the stage-1 step hands the student is the
    teacher run on exactly the image the step shows the student (to fp16 precision)."""
    from gkd.data.prepared import SegmentationSplit
    from gkd.features import TeacherCache
    from gkd.models.artifacts import load_backbone
    from gkd.stages import teacher_features
    from gkd.stages.distill import stage1_step
    params = yaml.safe_load((ws / "params.yaml").read_text())
    params["views"] = {"hflip": True, "photometric": 1, "jitter": 0.4}
    (tmp_path / "p.yaml").write_text(yaml.safe_dump(params))
    teacher_features.main(["--params", str(tmp_path / "p.yaml"), "--data", str(ws / "data"), "--teacher-weights",
                           str(ws / "teacher"), "--out", str(tmp_path / "feat")])
    cache = TeacherCache(tmp_path / "feat" / "train")
    cfg = ViewsConfig(**params["views"])
    assert cache.views == 4
    seen = {}

    def record(x, tokens, mask):  # stands in for the stage-1 module: keeps what the step gives it
        seen.update(x=x, tokens=tokens)
        return {}
    split = SegmentationSplit(ws / "data", "sim", "train", with_labels=False)
    idx = torch.arange(16)
    images = torch.stack([split[i][0] for i in range(16)])
    stage1_step(cache, cfg, params["seed"], 7, 0.5, 16, "cpu")(record, (images, None, idx), "train", 3)
    chosen = views.choose([np.random.default_rng([7, 3, int(i)]) for i in idx], 4)
    assert {0, 1, 2, 3} <= set(chosen.tolist()) | {0, 1, 2, 3} and (chosen % 2 == 1).any() and (chosen >= 2).any()
    teacher = load_backbone(ws / "teacher", img_size=56, patch_size=14).eval()
    with torch.no_grad():
        direct = teacher.forward_tokens(seen["x"], with_levels=False)[0]
    assert torch.allclose(seen["tokens"], direct.half().float(), atol=2e-3, rtol=2e-3)
    # and the old shortcut (the plain view's token grid, mirrored) is not that target
    mirrored = chosen % 2 == 1
    plain = cache.get("tokens", idx.numpy(), (chosen - chosen % 2).numpy())
    grid = plain[:, 1:].reshape(16, 4, 4, -1).flip(2).reshape(16, 16, -1)
    assert not torch.allclose(grid[mirrored], seen["tokens"][mirrored][:, 1:], atol=1e-2)


class Exact(torch.nn.Module):
    """A stage-1 module whose predictions are the teacher's targets (+ offset): R² 1 at offset 0."""
    patch_loss_masked_only = False

    def __init__(self, offset=0.0):
        super().__init__()
        self.offset = offset
        self.student = type("S", (), {"num_patches": 16})()

    def predictions(self, images, target, mask):
        return {"token": (target[:, 0] + self.offset, target[:, 0]), "fea": (target + self.offset, target),
                "patch": (target[:, 1:] + self.offset, target[:, 1:])}


def test_fidelity_is_one_for_the_teacher_and_the_baseline_for_a_constant(ws):
    from gkd.data.prepared import SegmentationSplit
    from gkd import fidelity
    from gkd.features import TeacherCache
    held = TeacherCache(ws / "feat" / "heldout" / "sim")
    ds = SegmentationSplit(ws / "data", "sim", "val", with_labels=False)
    constant = fidelity.constant_predictions(TeacherCache(ws / "feat" / "train"))
    exact = fidelity.measure(Exact(), ds, held, constant, 0.5, 8)
    assert all(v["mse"] < 1e-9 and abs(v["r2"] - 1) < 1e-6 and v["baseline"] > 0 for v in exact.values())
    off = fidelity.measure(Exact(0.5), ds, held, constant, 0.5, 8)
    assert all(abs(v["mse"] - 0.25) < 1e-4 for v in off.values())


def test_distill_runs_two_fresh_phases_and_writes_its_fidelity(ws):
    from gkd.stages import distill
    out = ws / "phases" / "stage1"
    distill.main(["--params", str(ws / "params.yaml"), "--method", "gkd", "--data", str(ws / "data"),
                  "--student-weights", str(ws / "student"), "--features", str(ws / "feat"), "--out", str(out),
                  "--live", str(ws / "phases" / "live"), "--seed", "3"])
    report = json.loads((out / "fidelity.json").read_text())
    assert list(report["phases"]) == ["1a", "1b"] and report["seed"] == 3
    assert set(report["phases"]["1a"]["domains"]) == {"sim", "generic"}
    assert set(report["phases"]["1b"]["domains"]) == {"sim", "generic", "city", "night", "fog", "rain", "snow"}
    for terms in report["phases"]["1b"]["domains"].values():
        assert set(terms) == {"token", "fea", "patch"}
        assert all(np.isfinite([t["mse"], t["baseline"], t["r2"]]).all() for t in terms.values())
    # each phase its own schedule: both start at the full learning rate
    lr = {}
    for phase in ("1a", "1b"):
        rows = (ws / "phases" / "live" / "plots" / "metrics" / "train" / phase / "lr.tsv").read_text().split()
        lr[phase] = float(rows[3])  # "step lr" header, then the first logged row (step 1)
    params = yaml.safe_load((ws / "params.yaml").read_text())["distill"]
    assert lr["1a"] > 0.5 * params["lr"] and lr["1b"] > 0.5 * params["lr"]


def test_run_seed_and_budget_change_only_the_student_side(tiny_cfg):
    from gkd.config import for_run
    cfg = for_run(tiny_cfg, seed=5, budget=4)
    assert cfg.train_seed == 5 and cfg.seed == tiny_cfg.seed  # data, teacher and views keep `seed`
    assert cfg.distill.source_epochs == 4 * tiny_cfg.distill.source_epochs
    assert cfg.distill.generic_epochs == 4 * tiny_cfg.distill.generic_epochs
    assert cfg.adapt.epochs == 4 * tiny_cfg.adapt.epochs and cfg.pretrain == tiny_cfg.pretrain
    assert for_run(tiny_cfg).train_seed == tiny_cfg.seed


def test_crop_labels_are_each_crops_majority_class():
    from gkd.pretrain import crops
    labels = torch.zeros(3, 32, 32, dtype=torch.uint8)
    labels[:, :, 16:] = 1
    labels[2, 10:14, 10:14] = 2                                   # a small object, on class 0's half
    labels[0] = 2                                                 # one class everywhere
    images = torch.randint(0, 256, (3, 3, 32, 32), dtype=torch.uint8)
    x, y = crops(images, labels, [np.random.default_rng(i) for i in range(3)], 3, (4, 6), 16)
    assert x.shape == (3, 3, 16, 16) and y.dtype == torch.long and y[0].item() == 2
    _, whole = crops(images, labels, [np.random.default_rng(0)] * 3, 3, (32, 32), 16)
    assert whole.tolist() == [2, 0, 1]  # whole images: a tie goes to the lower class; the object tips image 2


def test_paired_bootstrap_of_a_constant_shift_and_of_identical_methods():
    from gkd import stats
    rng = np.random.default_rng(0)

    def counts(n, bias):
        gt = rng.integers(50, 100, (n, 4))
        tp = np.minimum(gt, (gt * (0.5 + bias)).astype(int))
        return np.stack([tp, gt, gt], axis=1)
    base = [{"a": counts(40, 0.0), "b": counts(40, 0.0)} for _ in range(3)]
    same = stats.paired_bootstrap({"gkd": base, "copy": base}, "gkd", ["a", "b"], samples=200)
    assert same["copy"] == (0.0, 0.0)
    better = [{d: np.stack([np.minimum(c[:, 1], c[:, 0] + 10), c[:, 1], c[:, 2]], 1) for d, c in run.items()}
              for run in base]
    ci = stats.paired_bootstrap({"gkd": base, "better": better}, "gkd", ["a", "b"], samples=200)["better"]
    assert 0 < ci[0] <= ci[1]
    full = np.mean([stats.miou_from_counts(r["a"].sum(0)) for r in base])
    assert 0 < full < 100


def test_probe_recovers_a_linear_teacher_and_not_noise():
    from gkd.fidelity import probe_r2
    g = torch.Generator().manual_seed(0)
    student = torch.randn(40, 17, 12, generator=g)
    teacher = student @ torch.randn(12, 20, generator=g) + 0.5
    assert probe_r2(student, teacher) > 0.99
    assert probe_r2(student, torch.randn(40, 17, 20, generator=g)) < 0.05


def test_stage1_heads_get_their_own_learning_rate_only_when_head_lr_is_set(tiny_cfg):
    """`distill.head_lr`: the fresh heads' lr; null keeps one lr for student and heads (the official code).
    `distill.source_lr`: the student's lr in phase 1b only."""
    import dataclasses
    from gkd.methods.gkd import GKD, GKDOptions
    from gkd.models.backbone import create_backbone
    from gkd.stages.distill import stage1_param_groups
    student = create_backbone(dataclasses.replace(tiny_cfg.student, weights="none"), 56, seed=0, patch_size=14,
                              with_mask_token=True)
    module = GKD(GKDOptions()).stage1_module(student, 64)
    head_ids = {id(p) for n, p in module.named_parameters() if not n.startswith("student.")}

    def lrs(d, phase="1a"):
        return {(id(p) in head_ids, g["lr"]) for g in stage1_param_groups(module, d, phase) for p in g["params"]}
    same = dataclasses.replace(tiny_cfg.distill, lr=3e-4, head_lr=None, source_lr=None)
    assert lrs(same) == lrs(same, "1b") == {(False, 3e-4), (True, 3e-4)}
    assert lrs(dataclasses.replace(same, head_lr=3e-3)) == {(False, 3e-4), (True, 3e-3)}
    # distill.source_lr moves only the student, and only in phase 1b
    slow_1b = dataclasses.replace(same, source_lr=3e-5)
    assert lrs(slow_1b) == {(False, 3e-4), (True, 3e-4)}
    assert lrs(slow_1b, "1b") == {(False, 3e-5), (True, 3e-4)}
    every = [p for g in stage1_param_groups(module, same) for p in g["params"]]
    assert len(every) == len({id(p) for p in every}) == sum(p.requires_grad for p in module.parameters())


def test_weight_average_follows_the_steps_and_is_what_the_module_keeps():
    """distill.ema: the average after steps w1, w2, ... is the bias-corrected exponential average of them."""
    from gkd.train import WeightAverage
    module = torch.nn.Linear(1, 1, bias=False)
    module.weight.data.fill_(0.0)
    avg = WeightAverage(module, decay=0.9)
    expected = 0.0
    for t, w in enumerate([1.0, 2.0, 3.0, 4.0], start=1):
        module.weight.data.fill_(w)
        avg.update(module)
        d = min(0.9, (1 + t) / (10 + t))
        expected = d * expected + (1 - d) * w
    avg.copy_to(module)
    assert abs(module.weight.item() - expected) < 1e-6 and 1.0 < expected < 4.0
    restored = WeightAverage(module, decay=0.9)
    restored.load_state_dict(avg.state_dict())
    assert restored.steps == 4 and torch.equal(restored.shadow["weight"], avg.shadow["weight"])


def test_linear_cka_is_one_for_a_rotation_and_small_for_unrelated_tokens():
    from gkd.fidelity import linear_cka, patch_cka
    g = torch.Generator().manual_seed(0)
    x = torch.randn(500, 8, generator=g)
    rotation, _ = torch.linalg.qr(torch.randn(8, 8, generator=g))
    assert abs(linear_cka(x, 3.0 * x @ rotation + 1.0) - 1.0) < 1e-6
    assert linear_cka(x, torch.randn(500, 8, generator=g)) < 0.1
    tokens = torch.randn(10, 5, 8, generator=g)  # the CLS token (index 0) is left out
    other = tokens.clone()
    other[:, 0] = torch.randn(10, 8, generator=g)
    assert abs(patch_cka(tokens, other) - 1.0) < 1e-6


def test_qsd_temperature_softens_the_routing():
    from gkd.methods.heads import QSDHead
    torch.manual_seed(0)
    student, teacher = torch.randn(2, 16, 12), 3.0 * torch.randn(2, 16, 24)
    sharp, soft = QSDHead(12, 24), QSDHead(12, 24, temperature=24 ** 0.5)
    soft.load_state_dict(sharp.state_dict())
    assert sharp.attention(student, teacher).max(-1).values.mean() > soft.attention(student, teacher).max(-1).values.mean()
    assert torch.allclose(soft.attention(student, teacher).sum(-1), torch.ones(2, 16))


def test_zero_query_init_starts_from_uniform_routing_and_still_learns_it():
    from gkd.methods.heads import QSDHead
    torch.manual_seed(0)
    student, teacher = torch.randn(2, 16, 12), 3.0 * torch.randn(2, 16, 24)
    head = QSDHead(12, 24, query_init="zero")
    assert torch.allclose(head.attention(student, teacher), torch.full((2, 16, 16), 1 / 16))
    random = QSDHead(12, 24)
    assert random.attention(student, teacher).max(-1).values.mean() > 0.5  # raw keys: near one-hot from the start
    ((head(student, teacher) - teacher) ** 2).mean().backward()
    assert head.query[1].weight.grad.abs().sum() > 0  # the routing gets a gradient from the first step
    with pytest.raises(ValueError, match="query_init must be 'random' or 'zero', got 'zeros'"):
        QSDHead(12, 24, query_init="zeros")
