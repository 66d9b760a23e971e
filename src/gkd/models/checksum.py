"""sha256 of weight files, and the one-line error when a file is not the one a hash promises.

A mismatch has two suspects — the file, and the hash it is compared with (a `sha256:` typed into
params, or a hash built into the code) — so the error names both hashes and where each came from.
"""
from __future__ import annotations

import hashlib
from pathlib import Path

from gkd.errors import ConfigError


def sha256(path: str | Path) -> str:
    """Hex sha256 of a file, read in 1 MiB chunks (weight files can be gigabytes)."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def mismatch(path: str | Path, expected: str, expected_from: str, found: str, verdict: str) -> ConfigError:
    """The error for ``path`` hashing to ``found`` where ``expected`` (from ``expected_from``) was wanted.

    The ``sha256 mismatch: expected X, found Y`` head stays greppable; ``verdict`` says which side is
    likely wrong and what to do.
    """
    return ConfigError(f"{path}: sha256 mismatch: expected {expected}, found {found} (expected = {expected_from}; "
                       f"found = computed from the file): {verdict}; nothing was written")


def check(path: str | Path, expected: str | None, expected_from: str) -> str:
    """The file's sha256; if ``expected`` is given it must match (case-insensitive hex), else ConfigError."""
    found = sha256(path)
    if expected is not None and found != expected.strip().lower():
        raise mismatch(path, expected, expected_from, found,
                       "either the file is not the one that hash was written for (another model, a corrupt or "
                       "partial download) or the hash is wrong; if the file is right, set that sha256 to the "
                       "found value")
    return found
