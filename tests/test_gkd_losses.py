import numpy as np
import pytest
import torch
from torch import nn

from gkd.config import ModelConfig
from gkd.methods.gkd import GKD, GKDOptions
from gkd.methods.heads import QSDHead
from gkd.methods.masking import first_half_mask
from gkd.methods.student_only import StudentOnly, StudentOnlyOptions
from gkd.task import SegTask
from gkd.models.artifacts import new_segmenter
from gkd.models.backbone import create_backbone

TINY = ModelConfig(timm_name="vit_tiny_patch16_224", patch_size=8, embed_dim=32, depth=3, num_heads=2)


def student(mask_token=True):
    return create_backbone(TINY, 32, seed=0, with_mask_token=mask_token)


def test_qsd_shapes_and_attention_rows_sum_to_one():
    torch.manual_seed(0)
    head = QSDHead(32, 48)
    s, t = torch.randn(3, 16, 32), torch.randn(3, 16, 48)
    out = head(s, t)
    assert out.shape == (3, 16, 48)
    attn = head.attention(s, t)
    assert attn.shape == (3, 16, 16) and (attn >= 0).all()
    assert torch.allclose(attn.sum(-1), torch.ones(3, 16), atol=1e-6)
    with pytest.raises(ValueError, match="equal token grids"):
        head(s, torch.randn(3, 9, 48))


def test_first_half_mask():
    rngs = [np.random.default_rng(i) for i in range(6)]
    m = first_half_mask(rngs, 16, 0.5)
    assert m[:3].sum(1).tolist() == [8, 8, 8] and m[3:].sum() == 0
    assert not torch.equal(m[0], m[1])  # uniformly random positions, per sample


class Oracle(nn.Module):
    """A head that returns the teacher's tokens (+ an optional offset): 'student equals teacher'."""

    def __init__(self, offset=0.0, cls=False):
        super().__init__()
        self.offset, self.cls = offset, cls
        self.teacher = None

    def forward(self, s, t=None):
        return (self.teacher[:, 0] if self.cls else t) + self.offset


@pytest.mark.parametrize("offset", [0.0, 0.3])
def test_gkd_losses_zero_at_equality_positive_otherwise(offset):
    torch.manual_seed(0)
    method = GKD(GKDOptions())
    module = method.stage1_module(student(), teacher_dim=24)
    teacher = torch.randn(4, 17, 24)
    module.token_head = Oracle(offset, cls=True)
    module.token_head.teacher = teacher
    module.fea_head, module.patch_head = Oracle(offset), Oracle(offset)
    terms = module(torch.rand(4, 3, 32, 32), teacher, first_half_mask([np.random.default_rng(i) for i in range(4)], 16, .5))
    for k in ("token", "fea", "patch", "loss"):
        assert (terms[k].item() == 0.0) if offset == 0 else (terms[k].item() > 0), (k, terms[k])
    if offset:
        assert abs(terms["loss"].item() - 3 * offset ** 2) < 1e-5


def test_gkd_gradients_reach_student_and_mask_token_never_the_teacher():
    torch.manual_seed(0)
    module = GKD(GKDOptions()).stage1_module(student(), teacher_dim=24)
    teacher = torch.randn(4, 17, 24, requires_grad=True)
    mask = first_half_mask([np.random.default_rng(i) for i in range(4)], 16, 0.5)
    terms = module(torch.rand(4, 3, 32, 32), teacher, mask)
    terms["loss"].backward()
    assert teacher.grad is None
    assert module.student.mask_token.grad.abs().sum() > 0
    assert module.student.vit.blocks[0].attn.qkv.weight.grad.abs().sum() > 0
    assert all(p.grad is not None for p in module.fea_head.parameters())


def test_masked_view_reuse_equals_two_separate_passes():
    torch.manual_seed(0)
    module = GKD(GKDOptions()).stage1_module(student(), teacher_dim=24)
    with torch.no_grad():
        module.student.mask_token.normal_()
    x = torch.rand(4, 3, 32, 32)
    mask = first_half_mask([np.random.default_rng(i) for i in range(4)], 16, 0.5)
    unmasked, masked = module.student_views(x, mask)
    ref_u, _ = module.student.forward_tokens(x, with_levels=False)
    ref_m, _ = module.student.forward_tokens(x, mask=mask, with_levels=False)
    assert torch.allclose(unmasked, ref_u, atol=1e-5) and torch.allclose(masked, ref_m, atol=1e-5)
    assert not torch.allclose(masked[:2], unmasked[:2])


def test_mask_off_ablation_freezes_mask_token_and_plain_heads():
    module = GKD(GKDOptions(mask=False, qsd=False)).stage1_module(student(), teacher_dim=24)
    assert not module.student.mask_token.requires_grad
    assert not isinstance(module.patch_head, QSDHead)
    assert GKD(GKDOptions(mask=False)).mask_ratio == 0.0


def test_stage2_frozen_backbone_gets_no_gradient():
    seg = new_segmenter(student(mask_token=False), "mlp", 16, 5)
    task = SegTask(seg, GKD(GKDOptions()), frozen_backbone=GKD(GKDOptions()).frozen_backbone()).train()
    terms = task(torch.rand(2, 3, 32, 32), torch.randint(0, 5, (2, 32, 32)))
    terms["loss"].backward()
    assert all(p.grad is None for p in seg.backbone.parameters())
    assert all(p.grad is not None for p in seg.decoder.parameters())
    # end-to-end methods train the backbone
    seg2 = new_segmenter(student(mask_token=False), "mlp", 16, 5)
    SegTask(seg2, StudentOnly(StudentOnlyOptions()), frozen_backbone=False)(
        torch.rand(2, 3, 32, 32), torch.randint(0, 5, (2, 32, 32)))["loss"].backward()
    assert seg2.backbone.vit.blocks[0].mlp.fc1.weight.grad.abs().sum() > 0


def test_bad_stage2_mode_is_rejected():
    from gkd.config import ConfigError
    with pytest.raises(ConfigError, match="valid choices: finetune, frozen"):
        GKDOptions(stage2="thawed")
