"""The package's import graph: layers only import downwards, and the only circle is the dataset readers'
self-registration (``gkd.data.readers`` imports the modules that register into it)."""
from __future__ import annotations

import ast

from conftest import ROOT

PACKAGE = ROOT / "src" / "gkd"
# lowest first; a module may import its own layer and the ones below
LAYERS = [
    ("foundation", ["gkd.errors", "gkd.registry", "gkd.io", "gkd.config", "gkd.contract", "gkd.launch", "gkd.codegraph",
                    "gkd.provenance"]),
    ("data and models", ["gkd.data", "gkd.models", "gkd.metrics", "gkd.stats"]),
    ("methods and training", ["gkd.methods", "gkd.features", "gkd.train", "gkd.task", "gkd.fidelity", "gkd.agreement", "gkd.pretrain",
                              "gkd.initialise", "gkd.validate", "gkd.tables", "gkd.show", "gkd.plots", "gkd.predict"]),
    ("stages", ["gkd.stages"]),
    ("tools", ["gkd.cli", "gkd.dag", "gkd.bench", "gkd.bench_gpu", "gkd.schema", "gkd.check_data"]),
]
SELF_REGISTRATION = {"gkd.data.readers"}


def modules() -> dict[str, ast.Module]:
    out = {}
    for path in PACKAGE.rglob("*.py"):
        parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
        out[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = ast.parse(path.read_text())
    return out


def layer(name: str) -> int:
    best = [(len(prefix), i) for i, (_, prefixes) in enumerate(LAYERS) for prefix in prefixes
            if name == prefix or name.startswith(prefix + ".")]
    assert best, f"{name} is in no layer: add it to LAYERS"
    return max(best)[1]


def imports(tree: ast.Module, known) -> set[str]:
    found = set()
    for node in ast.walk(tree):
        names = [a.name for a in node.names] if isinstance(node, ast.Import) else \
            [node.module, *(f"{node.module}.{a.name}" for a in node.names)] \
            if isinstance(node, ast.ImportFrom) and node.module else []
        found |= {n for n in names if n in known}
    return found


def test_no_module_imports_a_higher_layer():
    mods = modules()
    upward = [(m, n) for m, tree in mods.items() if m != "gkd" for n in imports(tree, mods)
              if n != "gkd" and layer(n) > layer(m)]
    assert not upward, upward


def test_no_import_cycles_but_the_readers_self_registration():
    mods = modules()
    graph = {m: imports(tree, mods) - {m, "gkd"} for m, tree in mods.items()}
    graph = {m: {n for n in deps if m not in SELF_REGISTRATION} for m, deps in graph.items()}

    def reaches(start, goal, seen):
        return any(n == goal or (n not in seen and not seen.add(n) and reaches(n, goal, seen)) for n in graph[start])
    cycles = sorted(m for m in graph if reaches(m, m, set()))
    assert not cycles, cycles
