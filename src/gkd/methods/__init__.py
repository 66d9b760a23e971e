"""Distillation methods by name (one module each) — the rows of the paper's tables.

A method says what it needs and supplies its losses:
* ``stage1``: it has a label-free representation-distillation stage (``distill``) before task training —
  such a method is a ``LabelFreeMethod`` (``stage1_module``, ``mask_ratio``);
* ``teacher_inputs``: the teacher signals its task training reads (``gkd.features.SIGNALS``: ``logits``
  cached by `teacher_task`; ``tokens``, ``shallow``, ``last`` by `teacher_features`), on the student's view;
* ``Options``: a dataclass of its knobs, validated from ``method_configs.<name>`` in params.yaml;
* ``stage1_module(...)`` / ``task_module(...)``: the trainable ``nn.Module`` whose ``forward`` returns a
  dict of named loss terms (``loss`` is optimised).

Nothing here imports a method: ``build_method`` imports the module its params entry's ``algo`` names
(``gkd.methods.<algo>``), so a stage's code is that one method; ``METHODS.load_all()`` imports them all
(plan-time validation: ``gkd check``, ``gkd dag``, the Snakefile's parse).
"""
from __future__ import annotations

from gkd.methods.base import (METHODS, LabelFreeMethod, Method, build_method, method_module,  # noqa: F401
                              method_options, register_method)
