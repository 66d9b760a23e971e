"""The pipeline's stage table, and ``dvc.yaml`` written from it (``gkd dag``).

Snakemake's rules (``workflow/rules/*.smk``) are written by hand for readability; ``dvc.yaml`` is
generated from this table, because per-method stages need exact, per-method dependencies that DVC's
``foreach`` can only express as one group per dependency shape. ``tests/test_dag.py`` checks that the
committed ``dvc.yaml`` is what this module writes and that Snakemake's jobs have the same names,
commands, inputs and outputs as DVC's stages.

Selectors stay DVC templates (``${teacher}``), so ``dvc exp run -S student=vit_s`` needs no
regeneration. The method list is resolved when the file is written: after editing ``methods`` in
params.yaml, run ``gkd dag`` (the report stage refuses a stale ``dvc.yaml``).
"""
from __future__ import annotations

from dataclasses import dataclass, field

LAUNCH = "accelerate launch --quiet --config_file workflow/accelerate.yaml -m"
PY = "python -m"

# Library code each stage family imports (besides its own module): a change reruns the stage.
LIB_DATA = ["src/gkd/config.py", "src/gkd/data", "src/gkd/io.py"]
LIB_TRAIN = LIB_DATA + ["src/gkd/models", "src/gkd/train.py", "src/gkd/features.py"]
LIB_METHODS = LIB_TRAIN + ["src/gkd/distill"]

DATA = "data/prepared/${benchmark}"
TEACHER = "models/teachers/${teacher}"
STUDENT = "models/students/${student}"
FEATURES = "features/${benchmark}/${teacher}"
TEACHER_TASK = "models/teacher_task"


@dataclass
class Stage:
    name: str
    cmd: str
    deps: list[str]
    params: list[str]
    outs: list[str] = field(default_factory=list)
    plots: list[str] = field(default_factory=list)      # cache: false outputs shown by `dvc plots`
    metrics: list[str] = field(default_factory=list)    # cache: false outputs shown by `dvc exp show`
    foreach: list[str] | None = None                    # DVC foreach over method names (${item})

    def to_dvc(self) -> dict:
        body: dict = {"cmd": self.cmd, "deps": self.deps, "params": self.params}
        outs = list(self.outs) + [{p: {"cache": False}} for p in self.plots]
        if outs:
            body["outs"] = outs
        if self.metrics:
            body["metrics"] = [{p: {"cache": False}} for p in self.metrics]
        if self.foreach is not None:
            return {"foreach": self.foreach, "do": body}
        return body


def method_groups(cfg) -> dict[str, list[str]]:
    """Selected methods by dependency shape: own stage 1, teacher-free, or reading teacher outputs."""
    from gkd.distill import method_options
    groups: dict[str, list[str]] = {"stage1": [], "plain": [], "kd": []}
    for name in cfg.methods:
        cls, _ = method_options(cfg, name)
        groups["stage1" if cls.stage1 else ("kd" if cls.teacher_inputs else "plain")].append(name)
    return groups


def stages(cfg) -> list[Stage]:
    g = method_groups(cfg)
    sel = "--params params.yaml --benchmark ${benchmark}"
    out: list[Stage] = [
        Stage("prepare",
              f"{PY} gkd.stages.prepare {sel} --out {DATA} --samples plots/${{benchmark}}_samples.png",
              ["src/gkd/stages/prepare.py"] + LIB_DATA,
              ["seed", "benchmark", "benchmarks.${benchmark}"],
              outs=[DATA], plots=["plots/${benchmark}_samples.png"]),
        Stage("teacher_weights",
              f"{LAUNCH} gkd.stages.teacher_weights {sel} --teacher ${{teacher}} --data {DATA} --out {TEACHER}",
              ["src/gkd/stages/teacher_weights.py", DATA] + LIB_TRAIN,
              ["seed", "benchmarks.${benchmark}", "teacher", "teachers.${teacher}", "pretrain"],
              outs=[TEACHER]),
        Stage("student_weights",
              f"{LAUNCH} gkd.stages.student_weights {sel} --student ${{student}} --data {DATA} --out {STUDENT}",
              ["src/gkd/stages/student_weights.py", DATA] + LIB_TRAIN,
              ["seed", "benchmarks.${benchmark}", "student", "students.${student}", "pretrain"],
              outs=[STUDENT]),
        Stage("teacher_features",
              f"{LAUNCH} gkd.stages.teacher_features {sel} --teacher ${{teacher}} --data {DATA} "
              f"--teacher-weights {TEACHER} --out {FEATURES}",
              ["src/gkd/stages/teacher_features.py", DATA, TEACHER] + LIB_TRAIN,
              ["seed", "benchmarks.${benchmark}", "teacher_features"],
              outs=[FEATURES]),
        Stage("teacher_task",
              f"{LAUNCH} gkd.stages.teacher_task {sel} --teacher ${{teacher}} --data {DATA} "
              f"--teacher-weights {TEACHER} --features {FEATURES} --out {TEACHER_TASK} "
              f"--live logs/teacher_task",
              ["src/gkd/stages/teacher_task.py", DATA, TEACHER, FEATURES] + LIB_METHODS,
              ["seed", "benchmarks.${benchmark}", "adapt", "teacher_features.shard_size"],
              outs=[TEACHER_TASK], plots=["logs/teacher_task"]),
    ]
    pair = f"{sel} --teacher ${{teacher}} --student ${{student}} --method ${{item}}"
    if g["stage1"]:
        out.append(Stage(
            "distill",
            f"{LAUNCH} gkd.stages.distill {pair} --data {DATA} --student-weights {STUDENT} --features {FEATURES} "
            f"--out models/${{item}}/stage1 --live logs/${{item}}/stage1",
            ["src/gkd/stages/distill.py", DATA, STUDENT, FEATURES] + LIB_METHODS,
            ["seed", "benchmarks.${benchmark}", "distill", "method_configs.${item}"],
            outs=["models/${item}/stage1"], plots=["logs/${item}/stage1"], foreach=g["stage1"]))
        out.append(Stage(
            "adapt",
            f"{LAUNCH} gkd.stages.adapt {pair} --data {DATA} --init models/${{item}}/stage1 "
            f"--out models/${{item}}/stage2 --live logs/${{item}}/stage2",
            ["src/gkd/stages/adapt.py", DATA, "models/${item}/stage1"] + LIB_METHODS,
            ["seed", "benchmarks.${benchmark}", "adapt", "method_configs.${item}"],
            outs=["models/${item}/stage2"], plots=["logs/${item}/stage2"], foreach=g["stage1"]))
    if g["plain"]:
        out.append(Stage(
            "train",
            f"{LAUNCH} gkd.stages.adapt {pair} --data {DATA} --init {STUDENT} "
            f"--out models/${{item}}/stage2 --live logs/${{item}}/stage2",
            ["src/gkd/stages/adapt.py", DATA, STUDENT] + LIB_METHODS,
            ["seed", "benchmarks.${benchmark}", "adapt", "method_configs.${item}"],
            outs=["models/${item}/stage2"], plots=["logs/${item}/stage2"], foreach=g["plain"]))
    if g["kd"]:
        out.append(Stage(
            "train_kd",
            f"{LAUNCH} gkd.stages.adapt {pair} --data {DATA} --init {STUDENT} --teacher-task {TEACHER_TASK} "
            f"--features {FEATURES} --out models/${{item}}/stage2 --live logs/${{item}}/stage2",
            ["src/gkd/stages/adapt.py", DATA, STUDENT, TEACHER_TASK, FEATURES] + LIB_METHODS,
            ["seed", "benchmarks.${benchmark}", "adapt", "method_configs.${item}"],
            outs=["models/${item}/stage2"], plots=["logs/${item}/stage2"], foreach=g["kd"]))
    out.append(Stage(
        "evaluate_teacher",
        f"{LAUNCH} gkd.stages.evaluate {sel} --model {TEACHER_TASK} --data {DATA} --out metrics/teacher.json "
        f"--name teacher",
        ["src/gkd/stages/evaluate.py", "src/gkd/metrics.py", DATA, TEACHER_TASK] + LIB_TRAIN,
        ["evaluate"], metrics=["metrics/teacher.json"]))
    out.append(Stage(
        "evaluate",
        f"{LAUNCH} gkd.stages.evaluate {sel} --model models/${{item}}/stage2 --data {DATA} "
        f"--out metrics/${{item}}.json --name ${{item}}",
        ["src/gkd/stages/evaluate.py", "src/gkd/metrics.py", DATA, "models/${item}/stage2"] + LIB_TRAIN,
        ["evaluate"], metrics=["metrics/${item}.json"], foreach=list(cfg.methods)))
    rows = ["metrics/teacher.json"] + [f"metrics/{m}.json" for m in cfg.methods]
    out.append(Stage(
        "report",
        f"{PY} gkd.stages.report {sel} --teacher ${{teacher}} --student ${{student}} "
        f"--metrics {' '.join(rows)} --out results/f2l_table.csv --plot plots/f2l_table.png",
        ["src/gkd/stages/report.py"] + rows,
        ["methods"], outs=["results/f2l_table.csv"], plots=["plots/f2l_table.png"]))
    return out


def dvc_yaml(cfg) -> str:
    import yaml
    doc = {"stages": {s.name: s.to_dvc() for s in stages(cfg)}}
    header = ("# GENERATED by `gkd dag` from src/gkd/dag.py: edit that file (or params.yaml's `methods`) and\n"
              "# rerun `gkd dag`; tests/test_dag.py fails if this file is stale or drifts from the Snakefile.\n")
    return header + yaml.safe_dump(doc, sort_keys=False, width=10_000)
