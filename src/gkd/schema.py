"""A JSON schema of params.yaml, generated from the typed config (``gkd schema``).

``gkd.config`` is what validates (with messages that name the key and the choices); the schema is for
editors (completion, inline checks and hover text in params.yaml, whose first line names the schema) and
Snakemake's ``validate()``. It is written to ``workflow/schemas/params.schema.json``; a test fails when it is
not what the types say, or when a key has no description.

A key's description is the comment on its field in ``gkd.config`` (``lr: float  # decoder``), continued on
comment lines aligned under it; a section's is its dataclass's docstring. So the meaning of a key is written
once, next to its type, and the editor shows the same words.
"""
from __future__ import annotations

import dataclasses
import functools
import inspect
import io
import json
import textwrap
import tokenize
import types
import typing
from typing import Any, Union

from gkd import config as c

SCHEMA_PATH = "workflow/schemas/params.schema.json"


def _type(hint: Any) -> dict:
    origin = typing.get_origin(hint)
    if origin in (Union, types.UnionType):
        inner = [a for a in typing.get_args(hint) if a is not type(None)]
        return {"anyOf": [_type(inner[0]), {"type": "null"}]}
    if origin is list:
        return {"type": "array", "items": _type(typing.get_args(hint)[0])}
    if origin is dict or hint is dict:
        return {"type": "object"}
    if dataclasses.is_dataclass(hint):
        return _object(hint)
    return {"type": {bool: "boolean", int: "integer", float: "number", str: "string"}[hint]}


@functools.cache
def field_comments(cls) -> dict[str, str]:
    """Each field's comment in ``cls``'s source: the comment ending its line, plus the comment-only lines
    right below it that start in the same column (a long description wrapped by hand)."""
    tokens = list(tokenize.generate_tokens(io.StringIO(textwrap.dedent(inspect.getsource(cls))).readline))
    fields = {f.name for f in dataclasses.fields(cls)}
    out: dict[str, str] = {}
    current, column = None, None
    for i, tok in enumerate(tokens):
        if tok.type == tokenize.NAME and tok.start[1] == 4 and tok.string in fields and \
                tokens[i + 1].string == ":" and tokens[i - 1].type in (tokenize.INDENT, tokenize.NL, tokenize.NEWLINE):
            current, column = tok.string, None  # a field line: `    name: type = default  # comment`
        elif tok.type == tokenize.COMMENT and current is not None:
            line_has_code = tok.line[:tok.start[1]].strip() != ""
            if line_has_code and column is None:
                out[current], column = tok.string[1:].strip(), tok.start[1]
            elif not line_has_code and tok.start[1] == column:
                out[current] += " " + tok.string[1:].strip()
            else:
                current = None
        elif tok.type not in (tokenize.NL, tokenize.NEWLINE, tokenize.COMMENT) and tok.start[1] == 4:
            current = None  # the next statement of the class body ends a comment's continuation
    return out


def _object(cls, skip: tuple[str, ...] = (), extra: bool = False) -> dict:
    hints = typing.get_type_hints(cls)
    comments = field_comments(cls)
    props, required = {}, []
    for f in dataclasses.fields(cls):
        if f.name in skip:
            continue
        props[f.name] = {**_type(hints[f.name]), **({"description": comments[f.name]} if f.name in comments else {})}
        if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
            required.append(f.name)
    out = {"type": "object", "properties": props, "additionalProperties": extra}
    if required:
        out["required"] = required
    if cls.__doc__ and not cls.__doc__.startswith(cls.__name__ + "("):
        out["description"] = " ".join(cls.__doc__.split())
    return out


def params_schema() -> dict:
    def presets(cls, what: str) -> dict:
        return {"type": "object", "additionalProperties": _object(cls), "description": what}

    method = {"type": "object", "description": "a method's settings: `algo` (its implementation) or `base` "
              "(another entry this one overlays), plus the method's own options",
              "properties": {"algo": {"type": "string", "description": "the implementation: a module of gkd.methods "
                                                                       "(its options dataclass checks the rest)"},
                             "base": {"type": "string", "description": "another method entry whose settings this "
                                                                       "one starts from (an overlay: one switch each)"}},
              "anyOf": [{"required": ["algo"]}, {"required": ["base"]}]}
    names = {"type": "array", "items": {"type": "string"}}
    props = {
        "benchmark": {"type": "string", "description": "selector: a key of `benchmarks`"},
        "teacher": {"type": "string", "description": "selector: a key of `teachers`"},
        "student": {"type": "string", "description": "selector: a key of `students`"},
        "methods": {**names, "description": "the F2L table's rows after the Teacher row: keys of `method_configs`"},
        "f2f": _object(c.F2FConfig), "ablation": _object(c.AblationConfig), "budget": _object(c.BudgetConfig),
        "seed": {"type": "integer", "description": "seed of the data, the teacher, the views, the student's "
                                                   "initialisation and the single-seed tables' runs"},
        "seeds": {"type": "array", "items": {"type": "integer"},
                  "description": "the runs of the multi-seed tables (results/f2l_seeds.csv, f2f_seeds.csv; opt-in)"},
        "threads": {"type": "integer", "description": "torch intra-op threads per stage process (0: every core); "
                                                      "identical bytes across front-ends need the same value"},
        "datasets": {"type": "object",
                     "additionalProperties": {"anyOf": [{"type": "string", "minLength": 1},
                                                        _object(c.FolderDatasetConfig)]},
                     "description": "a built-in dataset's name -> its folder as extracted (else <benchmark root>/"
                                    "<usual folder>); or a folder dataset's name -> its root, domains and classes "
                                    "(docs/custom-dataset.md)"},
        "benchmarks": presets(c.BenchmarkConfig, "benchmark presets by name (`benchmark:` selects one)"),
        "teachers": presets(c.ModelConfig, "teacher presets by name (`teacher:` selects one)"),
        "students": presets(c.ModelConfig, "student presets by name (`student:`, `f2f.student` select them)"),
        "method_configs": {"type": "object", "additionalProperties": method,
                           "description": "per-method settings by name (`methods:` and the other lists name them)"},
        "pretrain": _object(c.PretrainConfig), "student_pretrain": _object(c.StudentPretrainConfig),
        "views": _object(c.ViewsConfig), "teacher_features": _object(c.FeaturesConfig),
        "distill": _object(c.DistillConfig), "adapt": _object(c.AdaptConfig), "evaluate": _object(c.EvaluateConfig),
        "runtime": _object(c.RuntimeConfig),
        "manifest": _object(c.ManifestConfig),
    }
    # `mixed_precision: no` unquoted is false to YAML 1.1 readers (after `dvc exp run -S` rewrote the file)
    precision = props["runtime"]["properties"]["mixed_precision"]
    precision.pop("type")
    precision["anyOf"] = [{"enum": ["no", "bf16", "fp16"]}, {"const": False}]
    return {"$schema": "https://json-schema.org/draft/2020-12/schema", "title": "GKD pipeline params.yaml",
            "description": "Generated by `gkd schema` from gkd.config; do not edit.", "type": "object",
            "properties": props, "required": list(c.REQUIRED), "additionalProperties": False}


def undescribed(node: Any, path: str = "") -> list[str]:
    """The keys of a schema (at any depth: sections, presets, nested sections) that have no description."""
    if isinstance(node, list):
        return [m for i, item in enumerate(node) for m in undescribed(item, path)]
    if not isinstance(node, dict):
        return []
    out = [f"{path}.{key}".lstrip(".") for key, prop in node.get("properties", {}).items()
           if not str(prop.get("description", "")).strip()]
    for key, value in node.items():
        if key == "properties":
            out += [m for name, prop in value.items() for m in undescribed(prop, f"{path}.{name}")]
        elif key in ("additionalProperties", "items", "anyOf"):
            out += undescribed(value, f"{path}.<name>" if key == "additionalProperties" else path)
    return out


def text() -> str:
    return json.dumps(params_schema(), indent=2, sort_keys=False) + "\n"
