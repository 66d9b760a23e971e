"""Model artifacts: safetensors weights + a JSON that says how to rebuild the model.

A folder per artifact:
  ``backbone.safetensors`` + ``backbone.json``  (teacher weights, stage-1 students)
  ``model.safetensors`` + ``model.json``        (segmenters: backbone + decoder)
The JSON holds the backbone preset, image size, decoder and class names: enough to rebuild the
architecture without params.yaml (nanoGPT's "checkpoint carries its model args").
"""
from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import torch

from gkd import io
from gkd.config import ConfigError, ModelConfig
from gkd.models.backbone import Backbone, adapt_state_dict, create_backbone, load_state_file
from gkd.models.decoders import Segmenter, build_decoder


def save_backbone(directory: Path, backbone: Backbone, preset: ModelConfig, img_size: int, info: dict) -> None:
    """Save a backbone's timm state dict (+ its mask token, if any) and how to rebuild it."""
    state = {k: v for k, v in backbone.vit.state_dict().items()}
    if backbone.mask_token is not None:
        state["gkd.mask_token"] = backbone.mask_token.data
    io.save_safetensors(directory / "backbone.safetensors", state)
    io.write_json(directory / "backbone.json", {"preset": dataclasses.asdict(preset), "img_size": img_size,
                                                "patch_size": backbone.vit.patch_embed.patch_size[0], **info})


def load_backbone(directory: Path, img_size: int | None = None, seed: int = 0, patch_size: int | None = None,
                  with_mask_token: bool = False) -> Backbone:
    directory = Path(directory)
    meta_path = directory / "backbone.json"
    if not meta_path.is_file():
        raise ConfigError(f"{str(directory)!r} holds no backbone (missing backbone.json)")
    meta = json.loads(meta_path.read_text())
    preset = ModelConfig(**meta["preset"])
    state = load_state_file(directory / "backbone.safetensors")
    mask_token = state.pop("gkd.mask_token", None)
    bb = _build_with_state(preset, img_size or meta["img_size"], seed, state, patch_size or meta["patch_size"],
                           with_mask_token)
    bb.preset = preset
    if mask_token is not None and bb.mask_token is not None:
        bb.mask_token.data.copy_(mask_token)
    return bb


def _build_with_state(preset, img_size, seed, state, patch_size, with_mask_token) -> Backbone:
    bb = create_backbone(ModelConfig(**{**dataclasses.asdict(preset), "weights": "none"}), img_size, seed=seed,
                         patch_size=patch_size, with_mask_token=with_mask_token)
    bb.vit.load_state_dict(adapt_state_dict(state, bb.vit), strict=True)
    return bb


def new_segmenter(backbone: Backbone, decoder: str, dim: int, num_classes: int) -> Segmenter:
    return Segmenter(backbone, build_decoder(decoder, backbone.embed_dim, len(backbone.levels), num_classes, dim))


def save_segmenter(directory: Path, model: Segmenter, img_size: int, decoder: str, dim: int,
                   classes: list[str], info: dict, palette: list | None = None) -> None:
    model = getattr(model, "module", model)
    preset = model.backbone.preset
    state = {f"backbone.vit.{k}": v for k, v in model.backbone.vit.state_dict().items()}
    state.update({f"decoder.{k}": v for k, v in model.decoder.state_dict().items()})
    io.save_safetensors(directory / "model.safetensors", state)
    io.write_json(directory / "model.json", {
        "preset": dataclasses.asdict(preset), "img_size": img_size, "patch_size": model.backbone.vit.patch_embed.patch_size[0],
        "decoder": decoder, "decoder_dim": dim, "classes": classes, "palette": palette,
        "num_params": sum(p.numel() for p in model.parameters()), **info})


def load_segmenter(directory: Path) -> tuple[Segmenter, dict]:
    directory = Path(directory)
    meta_path = directory / "model.json"
    if not meta_path.is_file():
        raise ConfigError(f"{str(directory)!r} holds no segmentation model (missing model.json)")
    meta = json.loads(meta_path.read_text())
    return build_segmenter_from_meta(meta, load_state_file(directory / "model.safetensors"), str(directory)), meta


def build_segmenter_from_meta(meta: dict, state: dict, where: str = "model") -> Segmenter:
    """The architecture described by a model.json, with ``state`` loaded strictly."""
    preset = ModelConfig(**{**meta["preset"], "weights": "none"})
    bb = create_backbone(preset, meta["img_size"], seed=0, patch_size=meta["patch_size"])
    model = new_segmenter(bb, meta["decoder"], meta["decoder_dim"], len(meta["classes"]))
    try:
        model.backbone.vit.load_state_dict({k[len("backbone.vit."):]: v for k, v in state.items()
                                            if k.startswith("backbone.vit.")}, strict=True)
        model.decoder.load_state_dict({k[len("decoder."):]: v for k, v in state.items() if k.startswith("decoder.")},
                                      strict=True)
    except RuntimeError as err:
        raise ConfigError(f"{where}: weights do not match model.json: {err}") from err
    return model.eval()


def count_params(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())
