"""Each baseline's loss: zero at equality, positive otherwise, gradients only where they belong."""
from __future__ import annotations

import pytest
import torch

from gkd.features import TeacherBatch
from gkd.methods.afdcd import AfDCD, AfDCDOptions, omni_contrastive
from gkd.methods.cwd import channel_kl
from gkd.methods.vanilla_kd import pixel_kl
from gkd.methods.vitkd import ViTKD, ViTKDOptions


def test_pixel_kl_zero_at_equality_positive_otherwise_and_teacher_gets_no_grad():
    torch.manual_seed(0)
    t = torch.randn(2, 5, 4, 4, requires_grad=True)
    s = t.detach().clone().requires_grad_(True)
    assert pixel_kl(s, t, 1.0).item() == pytest.approx(0.0, abs=1e-7)
    s2 = torch.randn(2, 5, 4, 4, requires_grad=True)
    loss = pixel_kl(s2, t, 2.0)
    assert loss.item() > 0
    loss.backward()
    assert t.grad is None and s2.grad.abs().sum() > 0


def test_pixel_kl_matches_a_hand_computed_kl():
    zt, zs = torch.tensor([[[[1.0]], [[0.0]]]]), torch.tensor([[[[0.0]], [[0.0]]]])
    p = torch.softmax(torch.tensor([1.0, 0.0]), 0)
    expected = (p * (p.log() - torch.log(torch.tensor([0.5, 0.5])))).sum()
    assert pixel_kl(zs, zt, 1.0).item() == pytest.approx(expected.item(), rel=1e-6)


def test_channel_kl_is_a_spatial_distribution_per_channel():
    torch.manual_seed(0)
    t = torch.randn(2, 3, 4, 4)
    assert channel_kl(t.clone(), t, 4.0).item() == pytest.approx(0.0, abs=1e-6)
    # adding a constant per channel does not change a spatial softmax: CWD is blind to it
    assert channel_kl(t + torch.randn(2, 3, 1, 1), t, 4.0).item() == pytest.approx(0.0, abs=1e-5)
    assert channel_kl(torch.randn(2, 3, 4, 4), t, 4.0).item() > 0


def test_omni_contrastive_prefers_matching_groups():
    torch.manual_seed(0)
    t = torch.randn(2, 32, 4, 4)
    good = omni_contrastive(t.clone(), t, groups=8, patch=2, tau=0.07)
    bad = omni_contrastive(torch.randn(2, 32, 4, 4), t, groups=8, patch=2, tau=0.07)
    assert good.item() < bad.item() and good.item() >= 0
    with pytest.raises(ValueError, match="do not divide"):
        omni_contrastive(t, t, groups=5, patch=2, tau=0.07)


class _Task:
    def __init__(self, extra):
        self.extra = extra


def test_seg_task_never_lets_gradient_into_teacher_inputs():
    from gkd.config import ModelConfig
    from gkd.models.artifacts import new_segmenter
    from gkd.models.backbone import create_backbone
    from gkd.task import SegTask
    seg = new_segmenter(create_backbone(ModelConfig("vit_tiny_patch16_224", 8, embed_dim=32, depth=3, num_heads=2),
                                        32, seed=0), "mlp", 16, 5)
    m = AfDCD(AfDCDOptions(groups=4))
    task = SegTask(seg, m, frozen_backbone=False, extra=m.task_module(student_dim=32, teacher_shapes={
        "last": [16, 4, 4]}, grid=(4, 4)))
    teacher = {"last": torch.randn(2, 16, 4, 4, requires_grad=True),
               "logits": torch.randn(2, 5, 4, 4, requires_grad=True)}
    terms = task(torch.rand(2, 3, 32, 32), torch.randint(0, 5, (2, 32, 32)), teacher)
    assert set(terms) == {"ce", "fd", "ctr", "kd", "loss"}
    terms["loss"].backward()
    assert teacher["last"].grad is None and teacher["logits"].grad is None
    assert seg.backbone.vit.blocks[-1].mlp.fc2.weight.grad.abs().sum() > 0


def test_afdcd_terms_and_gradients():
    torch.manual_seed(0)
    m = AfDCD(AfDCDOptions())
    extra = m.task_module(student_dim=12, teacher_shapes={"last": [32, 4, 4]}, grid=(4, 4))
    s_levels = [torch.randn(2, 12, 4, 4, requires_grad=True)]
    teacher = {"last": torch.randn(2, 32, 4, 4), "logits": torch.randn(2, 5, 4, 4)}
    logits = torch.randn(2, 5, 4, 4, requires_grad=True)
    terms = m.task_terms(_Task(extra), logits=logits, levels=s_levels, teacher=TeacherBatch(**teacher))
    assert set(terms) == {"fd", "ctr", "kd"} and all(v.item() > 0 for v in terms.values())
    sum(terms[k] * w for k, w in m.task_weights().items()).backward()
    assert s_levels[0].grad.abs().sum() > 0 and logits.grad.abs().sum() > 0
    assert extra.align.weight.grad.abs().sum() > 0


def test_vitkd_terms_zero_when_generator_is_exact_and_gradients():
    torch.manual_seed(0)
    m = ViTKD(ViTKDOptions())
    extra = m.task_module(student_dim=12, teacher_shapes={"tokens": [17, 20]}, grid=(4, 4))
    tokens = torch.randn(2, 17, 12, requires_grad=True)
    taps = [torch.randn(2, 16, 12, requires_grad=True) for _ in range(2)]
    teacher = {"tokens": torch.randn(2, 17, 20), "shallow": torch.randn(2, 2, 16, 20)}
    terms = m.task_terms(_Task(extra), tokens=tokens, taps=taps, teacher=TeacherBatch(**teacher))
    assert terms["low"].item() > 0 and terms["gen"].item() > 0
    sum(terms[k] * w for k, w in m.task_weights().items()).backward()
    assert taps[0].grad.abs().sum() > 0 and tokens.grad.abs().sum() > 0
    # a mimic head that reproduces the teacher exactly gives zero mimicking loss
    with torch.no_grad():
        for lin in extra.mimic:
            lin.weight.zero_(), lin.bias.zero_()
    zero_teacher = {"tokens": teacher["tokens"].detach(), "shallow": torch.zeros(2, 2, 16, 20)}
    exact = m.task_terms(_Task(extra), tokens=tokens, taps=taps, teacher=TeacherBatch(**zero_teacher))
    assert exact["low"].item() == 0.0


def test_proteus_patch_loss_only_at_masked_positions():
    import numpy as np
    from gkd.config import ModelConfig
    from gkd.methods.masking import first_half_mask
    from gkd.methods.proteus import Proteus, ProteusOptions
    from gkd.models.backbone import create_backbone
    student = create_backbone(ModelConfig("vit_tiny_patch16_224", 8, embed_dim=32, depth=2, num_heads=2), 32,
                              seed=0, with_mask_token=True)
    module = Proteus(ProteusOptions()).stage1_module(student, 24)
    assert module.patch_loss_masked_only and not Proteus(ProteusOptions()).frozen_backbone()
    teacher = torch.randn(4, 17, 24)
    mask = first_half_mask([np.random.default_rng(i) for i in range(4)], 16, 0.5)
    # corrupt the teacher at unmasked positions: the patch term must not change
    corrupted = teacher.clone()
    corrupted[:, 1:][~mask] += 5.0
    torch.manual_seed(0)
    a = module(torch.rand(4, 3, 32, 32), teacher, mask)["patch"]
    b = module(torch.rand(4, 3, 32, 32).mul(0).add(0.5), teacher, mask)  # different input, same targets
    c = module(torch.rand(4, 3, 32, 32).mul(0).add(0.5), corrupted, mask)
    assert b["patch"].item() == pytest.approx(c["patch"].item(), rel=1e-6)
    assert b["fea"].item() != pytest.approx(c["fea"].item())


def test_teacher_batch_has_a_field_per_signal_of_the_table():
    """Methods read teacher signals as typed fields; the fields are exactly the signal table's rows."""
    import dataclasses
    from gkd.features import SIGNALS
    assert [f.name for f in dataclasses.fields(TeacherBatch)] == list(SIGNALS)
    x = torch.randn(2, 3, requires_grad=True)
    batch = TeacherBatch.of({"logits": x})
    assert batch.logits.requires_grad is False and batch.tokens is None
