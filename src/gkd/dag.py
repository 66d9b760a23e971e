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

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path

# `accelerate launch`, entered through its module: the `accelerate` console script first imports every
# subcommand (its `estimate` command pulls in timm, torchvision and torch._dynamo): ~2 s more per stage.
LAUNCH = "python -m accelerate.commands.launch --quiet --config_file workflow/accelerate.yaml -m"
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
        if self.outs:
            body["outs"] = list(self.outs)
        if self.plots:
            body["plots"] = [{p: {"cache": False}} for p in self.plots]
        if self.metrics:
            body["metrics"] = [{p: {"cache": False}} for p in self.metrics]
        if self.foreach is not None:
            return {"foreach": self.foreach, "do": body}
        return body


@dataclass(frozen=True)
class Setting:
    """One table's worth of method rows: F2L (the main student), F2F (a VFM-style student), ablation."""
    name: str              # f2l | f2f | ablation
    student: str           # DVC template of the student selector
    student_key: str       # params key holding it
    methods: list[str]

    @property
    def prefix(self) -> str:        # artifact paths: models/<prefix><method>/...
        return "" if self.name == "f2l" else f"{self.name}/"

    @property
    def stage_prefix(self) -> str:  # stage names: <stage_prefix>distill@<method>
        return "" if self.name == "f2l" else f"{self.name}_"


def settings(cfg, ablation: bool = False) -> list[Setting]:
    out = [Setting("f2l", "${student}", "student", list(cfg.methods))]
    if cfg.f2f.methods:
        out.append(Setting("f2f", "${f2f.student}", "f2f.student", list(cfg.f2f.methods)))
    if ablation and cfg.ablation.methods:
        out.append(Setting("ablation", "${student}", "student", list(cfg.ablation.methods)))
    return out


def method_groups(cfg, methods: list[str]) -> dict[str, list[str]]:
    """Methods by dependency shape: own stage 1, teacher-free, or reading cached teacher outputs."""
    from gkd.distill import method_options
    groups: dict[str, list[str]] = {"stage1": [], "plain": [], "kd": []}
    for name in methods:
        cls, _ = method_options(cfg, name)
        groups["stage1" if cls.stage1 else ("kd" if cls.teacher_inputs else "plain")].append(name)
    return groups


def student_dir(setting: Setting) -> str:
    return f"models/students/{setting.student}"


def setting_stages(cfg, st: Setting) -> list[Stage]:
    g = method_groups(cfg, st.methods)
    sp, pre, student = st.stage_prefix, st.prefix, student_dir(st)
    sel = "--params params.yaml --benchmark ${benchmark}"
    pair = f"{sel} --teacher ${{teacher}} --student {st.student} --method ${{item}}"
    model, live = f"models/{pre}${{item}}", f"logs/{pre}${{item}}"
    knobs = ["seed", "benchmarks.${benchmark}", "adapt", "method_configs.${item}", "runtime"]
    out: list[Stage] = []
    if st.name == "f2f":
        out.append(Stage(
            "f2f_student_weights",
            f"{LAUNCH} gkd.stages.student_weights {sel} --student {st.student} --data {DATA} --out {student}",
            ["src/gkd/stages/student_weights.py", "src/gkd/stages/teacher_weights.py", DATA] + LIB_TRAIN,
            ["seed", "benchmarks.${benchmark}", "f2f.student", "students.${f2f.student}", "pretrain", "runtime"],
            outs=[student]))
    if g["stage1"]:
        out.append(Stage(
            f"{sp}distill",
            f"{LAUNCH} gkd.stages.distill {pair} --data {DATA} --student-weights {student} --features {FEATURES} "
            f"--out {model}/stage1 --live {live}/stage1",
            ["src/gkd/stages/distill.py", DATA, student, FEATURES] + LIB_METHODS,
            ["seed", "benchmarks.${benchmark}", "distill", "method_configs.${item}", "runtime"],
            outs=[f"{model}/stage1"], plots=[f"{live}/stage1"], foreach=g["stage1"]))
        out.append(Stage(
            f"{sp}adapt",
            f"{LAUNCH} gkd.stages.adapt {pair} --data {DATA} --init {model}/stage1 "
            f"--out {model}/stage2 --live {live}/stage2",
            ["src/gkd/stages/adapt.py", DATA, f"{model}/stage1"] + LIB_METHODS, knobs,
            outs=[f"{model}/stage2"], plots=[f"{live}/stage2"], foreach=g["stage1"]))
    if g["plain"]:
        out.append(Stage(
            f"{sp}train",
            f"{LAUNCH} gkd.stages.adapt {pair} --data {DATA} --init {student} "
            f"--out {model}/stage2 --live {live}/stage2",
            ["src/gkd/stages/adapt.py", DATA, student] + LIB_METHODS, knobs,
            outs=[f"{model}/stage2"], plots=[f"{live}/stage2"], foreach=g["plain"]))
    if g["kd"]:
        out.append(Stage(
            f"{sp}train_kd",
            f"{LAUNCH} gkd.stages.adapt {pair} --data {DATA} --init {student} --teacher-task {TEACHER_TASK} "
            f"--features {FEATURES} --out {model}/stage2 --live {live}/stage2",
            ["src/gkd/stages/adapt.py", DATA, student, TEACHER_TASK, FEATURES] + LIB_METHODS, knobs,
            outs=[f"{model}/stage2"], plots=[f"{live}/stage2"], foreach=g["kd"]))
    out.append(Stage(
        f"{sp}evaluate",
        f"{LAUNCH} gkd.stages.evaluate {sel} --model {model}/stage2 --data {DATA} "
        f"--out metrics/{pre}${{item}}.json --name ${{item}}",
        ["src/gkd/stages/evaluate.py", "src/gkd/metrics.py", DATA, f"{model}/stage2"] + LIB_TRAIN,
        ["evaluate", "runtime"], metrics=[f"metrics/{pre}${{item}}.json"], foreach=list(st.methods)))
    rows = ["metrics/teacher.json"] + (["metrics/gkd.json"] if st.name == "ablation" else [])
    rows += [f"metrics/{pre}{m}.json" for m in st.methods]
    out.append(Stage(
        f"{sp}report",
        f"{PY} gkd.stages.report {sel} --teacher ${{teacher}} --student {st.student} --setting {st.name} "
        f"--metrics {' '.join(rows)} --out results/{st.name}_table.csv --plot plots/{st.name}_table.png "
        f"--radar plots/{st.name}_radar.png",
        ["src/gkd/stages/report.py", "src/gkd/plots.py"] + rows,
        ["methods", "f2f", "ablation"], outs=[f"results/{st.name}_table.csv"],
        plots=[f"plots/{st.name}_table.png", f"plots/{st.name}_radar.png"]))
    return out


def qualitative_stage(cfg) -> Stage | None:
    """Image / ground truth / a few methods' predictions, one row per domain (F2L models)."""
    shown = [m for m in QUALITATIVE if m in cfg.methods]
    if not shown:
        return None
    models = [f"models/{m}/stage2" for m in shown]
    return Stage(
        "qualitative",
        f"{LAUNCH} gkd.stages.qualitative --params params.yaml --benchmark ${{benchmark}} --data {DATA} "
        f"--models {' '.join(models)} --out plots/qualitative.png",
        ["src/gkd/stages/qualitative.py", "src/gkd/plots.py", DATA] + models + LIB_TRAIN,
        ["seed"], plots=["plots/qualitative.png"])


QUALITATIVE = ("student_only", "vanilla_kd", "gkd")


def stages(cfg, ablation: bool = False) -> list[Stage]:
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
              ["seed", "benchmarks.${benchmark}", "teacher", "teachers.${teacher}", "pretrain", "runtime"],
              outs=[TEACHER]),
        Stage("student_weights",
              f"{LAUNCH} gkd.stages.student_weights {sel} --student ${{student}} --data {DATA} --out {STUDENT}",
              ["src/gkd/stages/student_weights.py", "src/gkd/stages/teacher_weights.py", DATA] + LIB_TRAIN,
              ["seed", "benchmarks.${benchmark}", "student", "students.${student}", "pretrain", "runtime"],
              outs=[STUDENT]),
        Stage("teacher_features",
              f"{LAUNCH} gkd.stages.teacher_features {sel} --teacher ${{teacher}} --data {DATA} "
              f"--teacher-weights {TEACHER} --out {FEATURES}",
              ["src/gkd/stages/teacher_features.py", DATA, TEACHER] + LIB_TRAIN,
              ["seed", "benchmarks.${benchmark}", "teacher_features", "runtime"],
              outs=[FEATURES]),
        Stage("teacher_task",
              f"{LAUNCH} gkd.stages.teacher_task {sel} --teacher ${{teacher}} --data {DATA} "
              f"--teacher-weights {TEACHER} --features {FEATURES} --out {TEACHER_TASK} "
              f"--live logs/teacher_task",
              ["src/gkd/stages/teacher_task.py", DATA, TEACHER, FEATURES] + LIB_METHODS,
              ["seed", "benchmarks.${benchmark}", "adapt", "teacher_features.shard_size", "runtime"],
              outs=[TEACHER_TASK], plots=["logs/teacher_task"]),
        Stage("evaluate_teacher",
              f"{LAUNCH} gkd.stages.evaluate {sel} --model {TEACHER_TASK} --data {DATA} --out metrics/teacher.json "
              f"--name teacher",
              ["src/gkd/stages/evaluate.py", "src/gkd/metrics.py", DATA, TEACHER_TASK] + LIB_TRAIN,
              ["evaluate", "runtime"], metrics=["metrics/teacher.json"]),
    ]
    for st in settings(cfg, ablation):
        out += setting_stages(cfg, st)
    q = qualitative_stage(cfg)
    if q is not None:
        out.append(q)
    return out


def plan(cfg, ablation: bool = False) -> dict:
    """What Snakemake's rules take from the method registry: each setting's method groups and each
    stage's params keys (the registry imports torch; see ``cached_plan``)."""
    from gkd.config import check_registered
    check_registered(cfg)
    return {"groups": {st.name: method_groups(cfg, st.methods) for st in settings(cfg, ablation)},
            "stage_params": {s.name: s.params for s in stages(cfg, ablation)}}


def cached_plan(cfg, cache: str | Path, ablation: bool = False) -> dict:
    """``plan`` memoised on disk, keyed by the params and every source file of the package.

    Importing torch is ~2 s of a ~5 s no-op ``snakemake`` run; with the plan cached, parsing the
    Snakefile imports no torch. Any change to params.yaml, ``--config`` or the code recomputes it.
    """
    key = hashlib.sha256(json.dumps(cfg.raw, sort_keys=True, default=str).encode())
    key.update(str(ablation).encode())
    package = Path(__file__).resolve().parent
    for path in sorted(package.rglob("*.py")):
        key.update(path.relative_to(package).as_posix().encode() + b"\0" + path.read_bytes())
    digest = key.hexdigest()
    cache = Path(cache)
    try:
        stored = json.loads(cache.read_text())
        if stored.get("key") == digest:
            return stored["plan"]
    except (OSError, ValueError, AttributeError):
        pass  # missing or unreadable: recompute
    from gkd import io
    result = plan(cfg, ablation)
    io.write_json(cache, {"key": digest, "plan": result})
    return result


def dvc_yaml(cfg, ablation: bool = False) -> str:
    import yaml
    doc = {"stages": {s.name: s.to_dvc() for s in stages(cfg, ablation)}}
    header = ("# GENERATED by `gkd dag` from src/gkd/dag.py: edit that file (or params.yaml's `methods`) and\n"
              "# rerun `gkd dag`; tests/test_dag.py fails if this file is stale or drifts from the Snakefile.\n")
    return header + yaml.safe_dump(doc, sort_keys=False, width=10_000)
