"""What a stage reads of params: its declared slice, the params keys the front-ends derive from it, and the
config the stage sees, which holds nothing else.

Each stage module declares ``READS = Reads(...)``: dotted paths into ``gkd.config.Config`` (``"views"``,
``"benchmark.patch_size"``; ``benchmark`` / ``teacher`` / ``student`` are the presets its selectors name),
the method entries it works on (``methods``) and, for the weight stages, the pretraining recipe its preset's
``weights`` names (``recipe``). From that one declaration

* ``gkd.dag`` derives the stage's ``params:`` (``params_keys``) — DVC's params dependencies and the values
  Snakemake compares — so no stage lists its params by hand;
* ``common.setup`` hands the stage a ``StageConfig`` that raises ``ContractError`` on any other read, so an
  undeclared read fails the first time the stage runs (every stage runs in the tests), never silently.

``gkd.dag`` reads ``READS`` from the stage module's source (``declared``: the stage modules import torch,
the DAG must not), so its arguments are literals.
"""
from __future__ import annotations

import ast
import dataclasses
import types
from typing import Any

from gkd import config as config_mod
from gkd.errors import ContractError

FIELDS = tuple(f.name for f in dataclasses.fields(config_mod.Config))
# what every stage may read without declaring it: the selectors and the run's seed and budget come from its
# command line (a change changes the command), and `threads` only pins torch (no stage lists it as a param)
AMBIENT = frozenset({"benchmark_name", "teacher_name", "student_name", "run_seed", "budget_multiplier", "threads"})
PRESETS = {"benchmark": "benchmarks", "teacher": "teachers", "student": "students"}  # field -> params table
METHOD_MODES = ("", "selected", "labels")
# the section each trained-here weight source reads (gkd.initialise.WEIGHT_SOURCES); other sources read none
RECIPES = {"pretrain": "pretrain", "classify": "student_pretrain"}


@dataclasses.dataclass(frozen=True, init=False)
class Reads:
    """A stage's slice of params. ``keys``: dotted paths into ``Config``; ``methods``: ``selected`` (the
    ``--method`` entry and its ``base`` chain) or ``labels`` (the row-label fields of the table's methods,
    ``gkd.config.LABEL_FIELDS``); ``recipe``: ``teacher`` or ``student``, whose preset's ``weights`` names
    the pretraining section read (``RECIPES``)."""
    keys: tuple[str, ...]
    methods: str = ""
    recipe: str = ""

    def __init__(self, *keys: str, methods: str = "", recipe: str = ""):
        for key in keys:
            config_mod.choose(f"READS key {key!r}: Config field", key.split(".")[0],
                              [f for f in FIELDS if f not in AMBIENT | {"method_configs", "raw"}])
        config_mod.choose("READS methods", methods, METHOD_MODES)
        config_mod.choose("READS recipe", recipe, ("", "teacher", "student"))
        object.__setattr__(self, "keys", tuple(keys))
        object.__setattr__(self, "methods", methods)
        object.__setattr__(self, "recipe", recipe)

    def recipe_section(self, preset: dict | None) -> str | None:
        """The pretraining section a recipe stage reads, from its preset's params entry."""
        return RECIPES.get((preset or {}).get("weights", "")) if self.recipe else None


# ---------------------------------------------------------------------------------------------- params keys
def params_keys(reads: Reads, cfg, *, student: str = "${student}", method: str | None = None,
                labelled=(), recipe_preset: dict | None = None) -> list[str]:
    """The params keys ``reads`` stands for, as DVC writes them (selectors as ``${...}`` templates).

    ``student``: the template of the stage's student selector; ``method``: its ``--method``; ``labelled``: the
    methods whose row labels it prints; ``recipe_preset``: the params entry of its recipe role's preset."""
    tables = {"benchmark": "benchmarks.${benchmark}", "teacher": "teachers.${teacher}", "student": f"students.{student}"}
    out = []
    for key in reads.keys:
        head, _, rest = key.partition(".")
        out.append(f"{tables[head]}.{rest}".rstrip(".") if head in tables else key)
    section = reads.recipe_section(recipe_preset)
    if section:
        out.append(section)
    if reads.methods == "selected":
        out += config_mod.method_keys(cfg, method)
    elif reads.methods == "labels":
        out += config_mod.label_keys(cfg, labelled)
    return out


def declared(module_source: str) -> Reads | None:
    """``READS`` of a stage module, from its source (the call's arguments must be literals)."""
    for node in ast.parse(module_source).body:
        if isinstance(node, ast.Assign) and [getattr(t, "id", None) for t in node.targets] == ["READS"]:
            call = node.value
            func = getattr(call, "func", None)
            if not (isinstance(call, ast.Call) and "Reads" in (getattr(func, "id", None), getattr(func, "attr", None))):
                raise ContractError("READS must be a call Reads(...) with literal arguments")
            try:
                return Reads(*[ast.literal_eval(a) for a in call.args],
                             **{k.arg: ast.literal_eval(k.value) for k in call.keywords})
            except ValueError:
                raise ContractError("READS = Reads(...): every argument must be a literal") from None
    return None


# ---------------------------------------------------------------------------------------------- the guard
def tree(paths) -> dict:
    """Dotted paths → nested dict; a path's leaf is ``True`` (all of it)."""
    out: dict = {}
    for path in paths:
        node = out
        *parents, leaf = path.split(".")
        for part in parents:
            node = node.setdefault(part, {})
            if node is True:
                break
        else:
            node[leaf] = True
    return out


class _Guarded:
    """Attribute access to ``obj`` limited to ``allowed`` (a tree from ``tree``); properties and methods run
    against the guard, so what they read is checked too."""

    def __init__(self, obj: Any, allowed: dict, where: str, stage: str):
        object.__setattr__(self, "_obj", obj)
        object.__setattr__(self, "_allowed", allowed)
        object.__setattr__(self, "_where", where)
        object.__setattr__(self, "_stage", stage)

    def _field(self, name: str) -> Any:
        allowed = self._allowed.get(name)
        if allowed is None:
            declared = sorted(_paths(self._allowed, self._where))
            raise ContractError(f"stage {self._stage} read {self._where}{name}, which its READS does not declare "
                                f"(declared: {', '.join(declared) or 'nothing'}): add it to READS in "
                                f"src/gkd/stages/{self._stage}.py, then run `gkd dag`")
        value = getattr(self._obj, name)
        return value if allowed is True else _Guarded(value, allowed, f"{self._where}{name}.", self._stage)

    def __getattr__(self, name: str) -> Any:
        if name.startswith("__"):
            raise AttributeError(name)
        if dataclasses.is_dataclass(self._obj) and name in {f.name for f in dataclasses.fields(self._obj)}:
            return self._field(name)
        attr = getattr(type(self._obj), name, None)
        if isinstance(attr, property):
            return attr.fget(self)
        if isinstance(attr, types.FunctionType):
            return types.MethodType(attr, self)
        return getattr(self._obj, name)

    def __setattr__(self, name, value):
        raise dataclasses.FrozenInstanceError(f"cannot assign to field {name!r}")

    def __repr__(self) -> str:
        return f"<{type(self._obj).__name__} as stage {self._stage} may read it: {sorted(_paths(self._allowed, ''))}>"


def _paths(allowed: dict, prefix: str) -> list[str]:
    return [p for k, v in allowed.items()
            for p in ([f"{prefix}{k}"] if v is True else _paths(v, f"{prefix}{k}."))]


class StageConfig(_Guarded):
    """The ``Config`` a stage sees: its declared keys, the ambient fields (``AMBIENT``), the method entries its
    ``methods`` mode allows, and ``raw`` holding only its wholly declared top-level sections."""

    def __init__(self, cfg, reads: Reads, stage: str, method: str | None = None,
                 recipe_preset: dict | None = None):
        allowed = tree(reads.keys)
        section = reads.recipe_section(recipe_preset)
        if section:
            allowed[section] = True
        allowed.update({name: True for name in AMBIENT})
        super().__init__(cfg, allowed, "", stage)
        object.__setattr__(self, "reads", reads)
        object.__setattr__(self, "selected", method)

    @property
    def config(self):
        """The whole config behind the guard (provenance records it; no stage code reads it)."""
        return self._obj

    @property
    def raw(self) -> dict:
        whole = [k for k, v in self._allowed.items() if v is True and k not in AMBIENT and k not in PRESETS]
        return {k: self._obj.raw[k] for k in whole if k in self._obj.raw}

    @property
    def method_configs(self) -> dict:
        if self.reads.methods == "selected":
            return {self.selected: self.method(self.selected)}
        if self.reads.methods == "labels":
            return {name: self.method(name) for name in self._obj.method_configs}
        raise ContractError(f"stage {self._stage} read method_configs, which its READS does not declare "
                            f"(Reads(..., methods='selected' | 'labels'))")

    def method(self, name: str):
        """A method entry: the selected one whole (``methods='selected'``), any one's row-label fields only
        (``methods='labels'``)."""
        mode = self.reads.methods
        if mode == "selected" and name == self.selected:
            return self._obj.method(name)
        if mode == "labels":
            entry = self._obj.method(name)
            return dataclasses.replace(entry, options={k: v for k, v in entry.options.items()
                                                       if k in config_mod.LABEL_FIELDS})
        raise ContractError(f"stage {self._stage} read method_configs.{name}, which its READS does not declare "
                            f"(methods={mode!r}" + (f", selected {self.selected!r})" if mode == "selected" else ")"))


def recipe_preset(cfg, reads: Reads) -> dict | None:
    """The params entry of the preset whose pretraining recipe ``reads`` includes (None: no recipe), as the
    stage's selectors chose it."""
    if not reads.recipe:
        return None
    role = reads.recipe
    return cfg.raw[PRESETS[role]][getattr(cfg, f"{role}_name")]
