"""Things by name — one registry per kind (methods, decoders, dataset adapters and readers, weight sources).

timm's pattern: a flat dict filled by a decorator; an unknown name is one error listing the valid ones.
"""
from __future__ import annotations

from typing import Any

from gkd.errors import ConfigError


class Registry(dict):
    def __init__(self, kind: str):
        super().__init__()
        self.kind = kind

    def add(self, name: str, thing: Any) -> Any:
        if name in self:
            raise ValueError(f"{self.kind} {name!r} registered twice")
        self[name] = thing
        return thing

    def register(self, arg):
        """Decorator: ``@REGISTRY.register`` (under the object's ``name``) or ``@REGISTRY.register("name")``."""
        if isinstance(arg, str):
            return lambda thing: self.add(arg, thing)
        self.add(arg.name, arg)
        return arg

    def lookup(self, name: str) -> Any:
        if name not in self:
            raise ConfigError(f"unknown {self.kind} {name!r}; valid choices: {', '.join(sorted(self))}")
        return self[name]
