"""The teacher-token cache: fp16 arrays in memory-mappable shards plus a JSON index.

``features/<benchmark>/<teacher>/<split-key>/``
  ``index.json``          number of images, shard size, shapes, dtype, what produced it
  ``tokens-00000.npy``    N_shard × (1+P) × D  final-LayerNorm CLS + patch tokens (distillation targets)
  ``levels-00000.npy``    N_shard × L × D × h × w  multi-level block outputs (optional; teacher decoder)

Shards are ``.npy`` so that ``np.load(mmap_mode="r")`` reads exactly the rows a batch needs without
copying whole files; a corrupt or truncated shard is detected from its header and size.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch

from gkd import io
from gkd.config import ConfigError

INDEX = "index.json"


def save_shard(directory: Path, name: str, k: int, rows: np.ndarray) -> None:
    """Write shard ``k`` of array ``name`` (fp16) atomically."""
    with io.atomic_path(directory / f"{name}-{k:05d}.npy") as tmp:
        with open(tmp, "wb") as fh:
            np.save(fh, rows.astype(np.float16))


class FeatureCache:
    """Read access to one cached split: ``tokens(indices)`` and ``levels(indices)`` as float tensors."""

    def __init__(self, directory: str | Path):
        self.directory = Path(directory)
        index_path = self.directory / INDEX
        if not index_path.is_file():
            raise ConfigError(f"no teacher feature cache at {str(self.directory)!r} (missing {INDEX}); "
                              f"run the teacher_features stage")
        self.index = json.loads(index_path.read_text())
        self.num_images = self.index["num_images"]
        self.shard_size = self.index["shard_size"]
        self._arrays: dict[str, list[np.ndarray]] = {}
        for name in self.index["arrays"]:
            self._arrays[name] = [self._open(name, k) for k in range(self.index["arrays"][name]["shards"])]

    def _open(self, name: str, k: int) -> np.ndarray:
        path = self.directory / f"{name}-{k:05d}.npy"
        expected_rows = min(self.shard_size, self.num_images - k * self.shard_size)
        shape = (expected_rows, *self.index["arrays"][name]["shape"])
        try:
            arr = np.load(path, mmap_mode="r")
        except FileNotFoundError:
            raise ConfigError(f"teacher feature shard {str(path)!r} is missing; rerun teacher_features") from None
        except (ValueError, OSError) as err:
            raise ConfigError(f"teacher feature shard {str(path)!r} is corrupt ({err}); expected float16 "
                              f"array of shape {shape}; rerun teacher_features") from None
        if arr.shape != shape or arr.dtype != np.float16:
            raise ConfigError(f"teacher feature shard {str(path)!r} has shape {arr.shape} {arr.dtype}, "
                              f"expected {shape} float16; rerun teacher_features")
        return arr

    def get(self, name: str, indices) -> torch.Tensor:
        idx = np.asarray(indices, dtype=np.int64)
        shards, rows = idx // self.shard_size, idx % self.shard_size
        arrays = self._arrays[name]
        out = np.stack([arrays[s][r] for s, r in zip(shards, rows)])
        return torch.from_numpy(out.astype(np.float32))


def write_index(directory: Path, num_images: int, shard_size: int, arrays: dict[str, tuple], info: dict) -> None:
    io.write_json(directory / INDEX, {"num_images": num_images, "shard_size": shard_size, "dtype": "float16",
                                      "arrays": {k: {"shape": list(shape), "shards": -(-num_images // shard_size)}
                                                 for k, shape in arrays.items()}, **info})
