"""Token-grid alignment (weights resampled, never features) and backbone outputs, on random models."""
from __future__ import annotations

import pytest
import torch

from gkd.config import ConfigError, ModelConfig
from gkd.models.backbone import adapt_state_dict, create_backbone, level_indices, resize_pos_embed

TEACHER = ModelConfig(timm_name="vit_small_patch14_dinov2", patch_size=14, embed_dim=64, depth=4, num_heads=2)
STUDENT = ModelConfig(timm_name="deit_small_patch16_224", patch_size=16, embed_dim=48, depth=4, num_heads=2)


def test_teacher_patch14_resampled_to_student_patch16_gives_equal_grids(tmp_path):
    from safetensors.torch import save_file
    teacher = create_backbone(TEACHER, 518, seed=0)  # "checkpoint" at DINOv2's native 37×37 grid
    path = tmp_path / "t.safetensors"
    save_file({k: v.contiguous() for k, v in teacher.vit.state_dict().items()}, str(path))
    aligned = create_backbone(TEACHER, 128, seed=1, weights_file=path, patch_size=16)
    student = create_backbone(STUDENT, 128, seed=0)
    assert aligned.grid == student.grid == (8, 8)
    assert aligned.vit.patch_embed.proj.weight.shape[-2:] == (16, 16)
    assert aligned.vit.pos_embed.shape[1] == 1 + 64
    # the CLS position embedding is kept, the patch grid resampled
    assert torch.equal(aligned.vit.pos_embed[:, 0], teacher.vit.pos_embed[:, 0])
    x = torch.rand(2, 3, 128, 128)
    t_tokens, t_levels = aligned.forward_tokens(x)
    s_tokens, s_levels = student.forward_tokens(x)
    assert t_tokens.shape[:2] == s_tokens.shape[:2] == (2, 65)
    assert [l.shape[-2:] for l in t_levels] == [l.shape[-2:] for l in s_levels]


def test_resampled_patch_kernel_preserves_tokens_of_upsampled_patches():
    from timm.layers import resample_patch_embed
    w = torch.randn(8, 3, 14, 14)
    patch = torch.randn(1, 3, 14, 14)
    up = torch.nn.functional.interpolate(patch, size=(16, 16), mode="bicubic", align_corners=False, antialias=True)
    w16 = resample_patch_embed(w, [16, 16])
    a = torch.nn.functional.conv2d(patch, w, stride=14).flatten()
    b = torch.nn.functional.conv2d(up, w16, stride=16).flatten()
    assert torch.allclose(a, b, atol=1e-3 * a.abs().max())


def test_pos_embed_resize_keeps_prefix_and_is_identity_at_same_size():
    pos = torch.randn(1, 1 + 37 * 37, 8)
    assert resize_pos_embed(pos, (37, 37)) is pos
    small = resize_pos_embed(pos, (8, 8))
    assert small.shape == (1, 65, 8) and torch.equal(small[:, 0], pos[:, 0])


def test_levels_and_mask_token():
    assert level_indices(12) == [3, 5, 7, 11]
    bb = create_backbone(STUDENT, 64, seed=0, with_mask_token=True)
    x = torch.rand(2, 3, 64, 64)
    mask = torch.zeros(2, 16, dtype=torch.bool)
    a, levels = bb.forward_tokens(x)
    b, _ = bb.forward_tokens(x, mask=mask)
    assert torch.equal(a, b) and len(levels) == len(bb.levels) and levels[0].shape == (2, 48, 4, 4)
    mask[0, :8] = True
    c, _ = bb.forward_tokens(x, mask=mask)
    assert not torch.allclose(c[0], a[0]) and torch.allclose(c[1], a[1])


def test_seeded_init_is_identical_and_bad_sizes_are_clear():
    a = create_backbone(STUDENT, 64, seed=3).vit.state_dict()
    b = create_backbone(STUDENT, 64, seed=3).vit.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
    with pytest.raises(ConfigError, match="image size 60 is not a multiple of patch size 16"):
        create_backbone(STUDENT, 60, seed=0)
    with pytest.raises(ConfigError, match="weights file 'nope.safetensors' not found"):
        create_backbone(STUDENT, 64, seed=0, weights_file="nope.safetensors")


def test_timm_weights_without_internet_name_the_fix(monkeypatch):
    import timm
    def offline(*a, **k):
        raise OSError("offline")
    monkeypatch.setattr(timm, "create_model", offline)
    with pytest.raises(ConfigError, match="set `weights:` of this preset to a local .safetensors or .pth file"):
        create_backbone(ModelConfig(timm_name="deit_small_patch16_224", patch_size=16, weights="timm"), 64, seed=0)
