"""Things by name — one registry per kind (methods, decoders, dataset adapters and readers, weight sources).

timm's pattern: a flat dict filled by a decorator; an unknown name is one error listing the valid ones.

``ModuleRegistry`` is the lazy kind, for things whose modules a stage should import only when it uses them
(methods, dataset adapters): each entry lives in the module of its own name inside one package
(``gkd.methods.vitkd`` registers ``vitkd``), and a lookup imports just that module. So a stage's code is the
one method or adapter it runs (``gkd.dag`` lists that module as the stage's code dependency), while the
valid names are read from the package's sources without importing anything.
"""
from __future__ import annotations

import ast
import functools
import importlib
from pathlib import Path
from typing import Any

from gkd.errors import ConfigError

LOADED: list[str] = []  # modules this process imported through a ModuleRegistry (its provenance record lists them)


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

    def choices(self) -> list[str]:
        return sorted(self)

    def lookup(self, name: str) -> Any:
        if name not in self.choices():
            raise ConfigError(f"unknown {self.kind} {name!r}; valid choices: {', '.join(self.choices())}")
        return self[name]


class ModuleRegistry(Registry):
    """A registry whose entry ``name`` is registered by the module ``<package>.<name>``, imported on first use.

    ``decorator`` is the name the modules register with (``@register_method``); a module of the package that
    uses it is a module of this registry, which is how ``choices`` knows every name without an import.
    """

    def __init__(self, kind: str, package: str, decorator: str):
        super().__init__(kind)
        self.package, self.decorator = package, decorator

    def choices(self) -> list[str]:
        return sorted(set(self) | set(registering_modules(self.package, self.decorator)))

    def module(self, name: str) -> str:
        """The module that registers ``name`` (dotted), checked against the valid names."""
        if name not in self.choices():
            raise ConfigError(f"unknown {self.kind} {name!r}; valid choices: {', '.join(self.choices())}")
        return f"{self.package}.{name}"

    def __missing__(self, name: str) -> Any:
        module = self.module(name)
        importlib.import_module(module)
        if module not in LOADED:
            LOADED.append(module)
        if not dict.__contains__(self, name):
            raise ConfigError(f"module {module} registers no {self.kind} named {name!r}: a {self.kind}'s name is "
                              f"the name of its module")
        return dict.__getitem__(self, name)

    def load_all(self) -> "ModuleRegistry":
        """Import every module of the registry (plan-time validation, tests)."""
        for name in self.choices():
            self[name]
        return self


@functools.lru_cache(maxsize=None)
def registering_modules(package: str, decorator: str) -> tuple[str, ...]:
    """The modules of ``package`` (their last name) whose source applies ``@decorator`` (ast: nothing imported)."""
    folder = Path(__file__).resolve().parent.parent.joinpath(*package.split("."))
    found = []
    for path in sorted(folder.glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, (ast.FunctionDef, ast.ClassDef)) and any(
                    _called_name(d) == decorator for d in node.decorator_list):
                found.append(path.stem)
                break
    return tuple(found)


def _called_name(node: ast.expr) -> str:
    node = node.func if isinstance(node, ast.Call) else node
    return node.id if isinstance(node, ast.Name) else node.attr if isinstance(node, ast.Attribute) else ""
