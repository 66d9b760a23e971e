"""`gkd predict` and `gkd export`: use a trained segmenter outside the pipeline."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from gkd import io
from gkd.config import ConfigError
from gkd.models.artifacts import build_segmenter_from_meta, load_segmenter

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp")


def _palette(meta: dict) -> np.ndarray:
    if meta.get("palette"):
        return np.array(meta["palette"], np.uint8)
    rng = np.random.default_rng(0)  # a stable palette for models saved without one
    return rng.integers(0, 256, (len(meta["classes"]), 3), dtype=np.uint8)


@torch.no_grad()
def predict_folder(model_dir: Path, images: Path, out: Path, alpha: float = 0.5) -> int:
    """Colour-coded mask and overlay for every image in ``images``; returns how many were written."""
    from PIL import Image

    files = sorted(p for p in Path(images).iterdir() if p.suffix.lower() in IMAGE_SUFFIXES) \
        if Path(images).is_dir() else []
    if not files:
        raise ConfigError(f"no images ({', '.join(IMAGE_SUFFIXES)}) in {str(images)!r}")
    model, meta = load_segmenter(model_dir)
    palette = _palette(meta)
    size = meta["img_size"]
    out.mkdir(parents=True, exist_ok=True)
    for path in tqdm(files, desc="predict", mininterval=2):
        try:
            original = Image.open(path).convert("RGB")
        except Exception as err:
            raise ConfigError(f"cannot read image {path}: {err}") from err
        x = torch.from_numpy(np.array(original.resize((size, size), Image.BILINEAR))).permute(2, 0, 1)[None]
        pred = model.predict(x.float() / 255)[0].argmax(0).numpy().astype(np.uint8)
        mask = Image.fromarray(pred).resize(original.size, Image.NEAREST)
        colour = palette[np.array(mask)]
        overlay = (np.array(original) * (1 - alpha) + colour * alpha).astype(np.uint8)
        for suffix, pic in (("mask", colour), ("overlay", overlay)):
            with io.atomic_path(out / f"{path.stem}_{suffix}.png") as tmp:
                Image.fromarray(pic).save(tmp, format="PNG")
    return len(files)


def export(model_dir: Path, out: Path, onnx_path: Path | None = None) -> dict:
    """One self-contained safetensors file: weights + the JSON needed to rebuild the model."""
    from safetensors.torch import load_file
    meta = json.loads((Path(model_dir) / "model.json").read_text())
    state = load_file(str(Path(model_dir) / "model.safetensors"))
    io.save_safetensors(out, state, metadata={"gkd_model": json.dumps(meta, sort_keys=True)})
    if onnx_path is not None:
        model = load_exported(out)
        x = torch.rand(1, 3, meta["img_size"], meta["img_size"])
        try:
            with io.atomic_path(onnx_path) as tmp:
                torch.onnx.export(_Predict(model), (x,), str(tmp), input_names=["image"], output_names=["logits"],
                                  dynamic_axes={"image": {0: "batch"}, "logits": {0: "batch"}}, dynamo=False)
        except Exception as err:
            raise ConfigError(f"ONNX export failed ({type(err).__name__}: {err}); the safetensors file is fine") from err
    return meta


class _Predict(torch.nn.Module):
    def __init__(self, model):
        super().__init__()
        self.model = model

    def forward(self, image):  # float [0, 1], B×3×H×W → full-resolution logits
        return self.model.predict(image)


def load_exported(path: Path):
    """Rebuild a segmenter from an exported file alone."""
    from safetensors import safe_open
    with safe_open(str(path), "pt") as fh:
        raw = (fh.metadata() or {}).get("gkd_model")
        if raw is None:
            raise ConfigError(f"{path} was not written by `gkd export` (no gkd_model metadata)")
        state = {k: fh.get_tensor(k) for k in fh.keys()}
    return build_segmenter_from_meta(json.loads(raw), state)
