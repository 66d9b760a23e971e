"""`gkd predict` and `gkd export` on synthetic images, with a trained tiny model."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from conftest import run


def test_predict_writes_masks_and_overlays(ws, tmp_path):
    from gkd.data.synthetic import render
    images = tmp_path / "images"
    images.mkdir()
    for i, size in enumerate((56, 80)):  # any size: resized for the model, masks back to the original
        Image.fromarray(render("fog", (5, 5, i), size)[0]).save(images / f"img{i}.png")
    out = tmp_path / "pred"
    proc = run(["gkd", "predict", "--model", str(ws / "teacher_task"), "--images", str(images), "--out", str(out)],
               cwd=tmp_path)
    assert "2 images" in proc.stdout
    for i, size in enumerate((56, 80)):
        mask = np.array(Image.open(out / f"img{i}_mask.png"))
        assert mask.shape == (size, size, 3)
        assert Image.open(out / f"img{i}_overlay.png").size == (size, size)
    bad = run(["gkd", "predict", "--model", str(ws / "teacher_task"), "--images", str(tmp_path / "none"), "--out",
               str(out)], cwd=tmp_path, check=False)
    assert bad.returncode == 2 and "no images" in bad.stderr


def test_export_is_self_contained_and_identical(ws, tmp_path):
    from gkd.models.artifacts import load_segmenter
    from gkd.predict import load_exported
    out = tmp_path / "model.safetensors"
    run(["gkd", "export", "--model", str(ws / "teacher_task"), "--out", str(out)], cwd=tmp_path)
    original, meta = load_segmenter(ws / "teacher_task")
    rebuilt = load_exported(out)
    x = torch.rand(2, 3, meta["img_size"], meta["img_size"])
    with torch.no_grad():
        assert torch.equal(original.predict(x), rebuilt.predict(x))


def test_onnx_export_matches_torch(ws, tmp_path):
    ort = pytest.importorskip("onnxruntime", reason="onnxruntime not installed: ONNX export not checked")
    from gkd.predict import export, load_exported
    onnx_path = tmp_path / "model.onnx"
    meta = export(ws / "teacher_task", tmp_path / "m.safetensors", onnx_path)
    x = torch.rand(2, 3, meta["img_size"], meta["img_size"])
    sess = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
    ref = load_exported(tmp_path / "m.safetensors")
    with torch.no_grad():
        expected = ref.predict(x).numpy()
    assert np.abs(sess.run(["logits"], {"image": x.numpy()})[0] - expected).max() < 1e-3
