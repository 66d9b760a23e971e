"""The project's errors: one clear line for the user, raised before compute where possible.

``GKDError`` is what every stage CLI turns into ``error: <message>`` and exit code 2 (no traceback):
* ``ConfigError`` — a bad value in params.yaml or on the command line (names the key and the choices);
* ``DataError`` — raw or prepared data that is missing, unreadable or inconsistent;
* ``ArtifactError`` — a produced artifact (weights, feature cache, model) that is missing, corrupt or
  does not fit (rerun the stage that makes it).
"""
from __future__ import annotations


class GKDError(ValueError):
    """Base of every user-facing error of the pipeline."""


class ConfigError(GKDError):
    """A bad value in params.yaml (or on the command line), reported before any compute."""


class DataError(GKDError):
    """Raw or prepared data that is missing, unreadable or inconsistent."""


class ArtifactError(GKDError):
    """A pipeline artifact (weights, teacher cache, model) that is missing, corrupt or does not fit."""


class ContractError(GKDError):
    """A stage read a params key its ``READS`` does not declare (``gkd.contract``): a bug of that stage, which the
    front-ends would not rerun when the key changes."""
