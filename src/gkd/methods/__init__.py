"""Distillation methods by name (one module each) — the rows of the paper's tables.

A method says what it needs and supplies its losses:
* ``stage1``: it has a label-free representation-distillation stage (``distill``) before task training;
* ``teacher_inputs``: the teacher signals its task training reads (``gkd.features.SIGNALS``: ``logits``
  cached by `teacher_task`; ``tokens``, ``shallow``, ``last`` by `teacher_features`), on the student's view;
* ``Options``: a dataclass of its knobs, validated from ``method_configs.<name>`` in params.yaml;
* ``stage1_module(...)`` / ``task_module(...)``: the trainable ``nn.Module`` whose ``forward`` returns a
  dict of named loss terms (``loss`` is optimised).
"""
from __future__ import annotations

from gkd.methods.base import METHODS, Method, build_method, method_options, register_method  # noqa: F401

# Each method module registers itself; importing them here completes the registry.
from gkd.methods import afdcd, cwd, gkd, proteus, student_only, vanilla_kd, vitkd  # noqa: E402,F401
