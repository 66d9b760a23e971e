"""The code a module runs: the gkd modules its import closure executes, and their source files.

Pure ``ast`` (no import is executed), so it is torch-free and cheap: ``gkd.dag`` turns a stage module's
closure into the stage's code dependencies, and ``gkd.provenance`` hashes the same files into a stage's record.
"""
from __future__ import annotations

import ast
import functools
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent


@functools.lru_cache(maxsize=None)
def _module_file(name: str) -> Path | None:
    rel = PACKAGE.parent / Path(*name.split("."))
    if rel.with_suffix(".py").is_file():
        return rel.with_suffix(".py")
    if (rel / "__init__.py").is_file():
        return rel / "__init__.py"
    return None


@functools.lru_cache(maxsize=None)
def _imports(path: Path, module: str) -> frozenset[str]:
    """The gkd modules ``path`` imports (anywhere in the file: lazy imports run too)."""
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {a.name for a in node.names if a.name.split(".")[0] == "gkd"}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative import
                pkg = module.split(".")[: -node.level] if path.name != "__init__.py" else \
                    module.split(".")[: len(module.split(".")) - node.level + 1]
                base = ".".join(pkg + ([base] if base else []))
            if base.split(".")[0] != "gkd":
                continue
            found.add(base)
            found |= {f"{base}.{a.name}" for a in node.names if _module_file(f"{base}.{a.name}")}
    return frozenset(found)


@functools.lru_cache(maxsize=None)
def import_closure(module: str) -> tuple[str, ...]:
    """Every gkd module that importing ``module`` executes (parents' ``__init__`` included), sorted."""
    seen: set[str] = set()
    todo = [module]
    while todo:
        name = todo.pop()
        parts = name.split(".")
        for i in range(1, len(parts) + 1):  # importing a.b.c runs a/__init__ and a/b/__init__ first
            mod = ".".join(parts[:i])
            if mod in seen or _module_file(mod) is None:
                continue
            seen.add(mod)
            todo += sorted(_imports(_module_file(mod), mod))
    return tuple(sorted(seen))


def code_deps(*modules: str) -> list[str]:
    """The source files of the import closures of ``modules`` (a stage module, and the method or adapter it
    loads by name), as paths relative to the repository root, in module order."""
    root = PACKAGE.parent.parent
    closure = sorted({m for module in modules for m in import_closure(module)})
    return [_module_file(m).relative_to(root).as_posix() for m in closure]


def module_source(module: str) -> str:
    """The source text of a gkd module (read, not imported)."""
    path = _module_file(module)
    if path is None:
        raise ValueError(f"no module {module!r} in {PACKAGE}")
    return path.read_text()
