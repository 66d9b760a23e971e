"""The pipeline's one stage table, rendered to DVC's ``dvc.yaml`` files and to Snakemake's rules.

Torch-free to import. ``stages(cfg, shapes)`` lists every stage of every pipeline — name, the stage
module it runs, its flags, the artifacts it reads and writes, the params keys it reads — with the
selectors left as DVC templates (``${student}``), so ``dvc exp run -S student=vit_s`` needs no
regeneration. ``gkd dag`` writes one ``dvc.yaml`` per pipeline (``render_dvc``); the Snakefile builds one
rule per stage from the same list (``workflow/rules/pipeline.smk``), the selectors filled in from its
config. A stage's code dependencies are the import closure of its module (``code_deps``) and of the one method
or dataset adapter it loads by name (``Stage.uses``), not a hand list; its params are what its module declares
it reads (``READS``, ``gkd.contract``), with its selectors and method filled in.

Pipelines (``PIPELINES``): ``main`` (``dvc.yaml``: data, teacher, F2L and F2F single-seed tables, the
qualitative figure), and the opt-in ``seeds``, ``budget`` and ``ablation`` (``pipelines/<name>/dvc.yaml``,
written by ``gkd dag --with <name>`` and reproduced with ``dvc repro pipelines/<name>/dvc.yaml``;
Snakemake builds them when their targets are asked for). Which stages a method has (a label-free stage 1,
teacher inputs) is the method's own declaration in ``gkd.methods``; importing the methods imports torch, so
``cached_shapes`` memoises their shapes.
"""
from __future__ import annotations

import functools
import hashlib
import json
import re
from dataclasses import dataclass, field
from pathlib import Path

from gkd import contract, io
from gkd.codegraph import PACKAGE, code_deps, import_closure, module_source  # noqa: F401  (import_closure: re-exported)
from gkd.data.adapters import ADAPTERS
from gkd.methods.base import method_module

# `accelerate launch` through gkd.launch: one interpreter where the config asks for one process, Accelerate's
# own launcher for anything else (several GPUs or nodes).
LAUNCH = "python -m gkd.launch --config_file workflow/accelerate.yaml -m"
PY = "python -m"
PARAMS = "params.yaml"  # what DVC reads (its `params:` and templates); Snakemake adds its --configfile overlays
PIPELINES = {"main": "dvc.yaml", "seeds": "pipelines/seeds/dvc.yaml", "budget": "pipelines/budget/dvc.yaml",
             "ablation": "pipelines/ablation/dvc.yaml"}
QUALITATIVE = ("student_only", "vanilla_kd", "gkd")
REPORTS = ("gkd.stages.report", "gkd.stages.seeds_report", "gkd.stages.budget_report")  # each gets a view

# Every output is namespaced by the selectors it depends on (benchmark, teacher, student; a run's setting,
# seed and budget in Run.prefix), so experiments with different selectors live side by side in one
# workspace. The user-facing tables are also written to a fixed path (``view``): results/f2l_table.csv is
# the table of the experiment params.yaml selects.
DATA = "data/prepared/${benchmark}"
MANIFEST = "data/manifests/${benchmark}.json"
TEACHER_NS = "${benchmark}/${teacher}"
TEACHER = "models/${benchmark}/teachers/${teacher}"
FEATURES = f"features/{TEACHER_NS}"
TEACHER_TASK = f"models/{TEACHER_NS}/teacher_task"
TEACHER_METRICS = f"metrics/{TEACHER_NS}/teacher.json"
TEACHER_PER_IMAGE = f"metrics/{TEACHER_NS}/per_image/teacher.npz"
# each table row's seed spread as measured by the multi-seed runs (committed; docs/results.md says how it was measured)
REFERENCE_SPREAD = {"f2l": "results/reference_spread.csv", "f2f": "results/reference_spread_f2f.csv"}
# the stages that cache teacher signals (gkd.features.SIGNALS[...].stage) → the flag and folder a KD method's
# task training reads them from, in command order
TEACHER_OUTPUTS = {"teacher_task": ("--teacher-task", TEACHER_TASK), "teacher_features": ("--features", FEATURES)}


def student_init(student: str) -> str:
    """A student's initialisation (pretrained on the benchmark's generic stream, so per benchmark)."""
    return f"models/${{benchmark}}/students/{student}"


def view(path: str) -> str:
    """results/<benchmark>/<teacher>/<student>/f2l_table.csv → results/f2l_table.csv (the selected experiment's)."""
    return f"results/{Path(path).name}"


@dataclass
class Stage:
    name: str
    module: str                          # gkd.stages.<module>
    flags: list[tuple[str, str]]         # (flag, value), in command order; values may hold ${...} templates
    deps: list[str]                      # artifacts read (code dependencies are added from the import closure)
    params: list[str]                    # params keys read (DVC `params:`; Snakemake reruns when they change):
                                         # the module's READS (``stage_params``), never a hand list
    outs: list[str] = field(default_factory=list)
    plots: list[str] = field(default_factory=list)      # uncached outputs shown by `dvc plots`
    metrics: list[str] = field(default_factory=list)    # uncached outputs shown by `dvc exp show`
    family: str = "train"                # resources family (workflow profiles)
    launch: bool = True                  # through `accelerate launch`, or plain python (no torch work)
    pipeline: str = "main"
    # runs at every invocation (it observes what lies outside the workspace) and rewrites its outputs only
    # when their content changes. DVC: `always_changed`; Snakemake, which plans by mtimes before running
    # anything, calls the module's ``refresh(cfg, *outputs)`` while parsing (workflow/rules/pipeline.smk)
    always_changed: bool = False
    namespace: str = "${benchmark}"      # of its Snakemake log and benchmark files
    uses: list[str] = field(default_factory=list)  # modules it loads by name (its method, its dataset adapter)

    @property
    def command(self) -> str:
        return self.command_with(PARAMS)

    def command_with(self, params_files: str) -> str:
        """The command reading ``params_files`` (dvc.yaml: params.yaml; Snakemake: + any --configfile)."""
        flags = [(f, params_files if f == "--params" else v) for f, v in self.flags]
        return " ".join([LAUNCH if self.launch else PY, self.module] + [f"{f} {v}" if v else f for f, v in flags])

    @property
    def code(self) -> list[str]:
        # an always-changed stage runs (DVC) or is refreshed (Snakemake) by the current code anyway; its
        # code as an input would only make Snakemake rewrite its outputs when the code's mtime moves
        return [] if self.always_changed else code_deps(self.module, *self.uses)

    @property
    def outputs(self) -> list[str]:
        return self.outs + self.plots + self.metrics


# ---------------------------------------------------------------------------------------------- runs
@dataclass(frozen=True)
class Run:
    """One table's worth of method rows: a setting, at one seed and one budget."""
    setting: str              # f2l | f2f | ablation
    student: str              # DVC template of the student selector
    student_key: str          # its params key
    methods: tuple[str, ...]
    seed: int | None = None   # None: params.yaml's `seed` (the single-seed tables)
    budget: int = 1
    pipeline: str = "main"
    tag: str = ""             # a variant of the setting's student (the ablation's random-init row)

    @property
    def prefix(self) -> str:  # artifact paths: models/<prefix><method>/...
        parts = ([] if self.setting == "f2l" else [self.setting]) + ([self.tag] if self.tag else [])
        parts += ([] if self.seed is None else [f"seed{self.seed}"]) + ([] if self.budget == 1 else [f"budget{self.budget}"])
        return "".join(f"{p}/" for p in parts)

    def stage(self, kind: str, method: str | None = None) -> str:  # stage names: f2f-distill-gkd-seed1
        parts = ([] if self.setting == "f2l" else [self.setting]) + [kind] + ([method] if method else [])
        parts += ([self.tag] if self.tag else []) + ([] if self.seed is None else [f"seed{self.seed}"])
        parts += [] if self.budget == 1 else [f"x{self.budget}"]
        return "-".join(parts)

    def row(self, method: str) -> str:
        """The row name the evaluation writes (report labels it): the method, @tag for a student variant."""
        return f"{method}@{self.tag}" if self.tag else method

    @property
    def run_flags(self) -> list[tuple[str, str]]:
        return ([] if self.seed is None else [("--seed", str(self.seed))]) + \
               ([] if self.budget == 1 else [("--budget", str(self.budget))])

    @property
    def namespace(self) -> str:  # the selectors its outputs depend on
        return f"{TEACHER_NS}/{self.student}"

    def model(self, method: str) -> str:
        return f"models/{self.namespace}/{self.prefix}{method}"

    def live(self, method: str) -> str:
        return f"logs/{self.namespace}/{self.prefix}{method}"

    def metrics(self, method: str) -> str:
        return f"metrics/{self.namespace}/{self.prefix}{method}.json"

    def per_image(self, method: str) -> str:
        return f"metrics/{self.namespace}/per_image/{self.prefix}{method}.npz"

    def output(self, kind: str, name: str) -> str:  # kind: results | plots
        return f"{kind}/{self.namespace}/{name}"


def runs(cfg) -> list[Run]:
    """Every run of every pipeline. The multi-seed runs reuse the single-seed run for `seed`."""
    f2l = Run("f2l", "${student}", "student", tuple(cfg.methods))
    f2f = Run("f2f", "${f2f.student}", "f2f.student", tuple(cfg.f2f.methods)) if cfg.f2f.methods else None
    single = [f2l] + ([f2f] if f2f else [])  # the settings' single-seed runs: each other seed repeats these
    out = list(single)
    for seed in cfg.seeds:
        if seed != cfg.seed:
            out += [Run(r.setting, r.student, r.student_key, r.methods, seed=seed, pipeline="seeds") for r in single]
    out += [Run("f2l", "${student}", "student", tuple(cfg.methods), budget=k, pipeline="budget")
            for k in cfg.budget.multipliers if k != 1]
    if cfg.ablation.methods:
        out.append(Run("ablation", "${student}", "student", tuple(cfg.ablation.methods), pipeline="ablation"))
    if cfg.ablation.random_student:
        out.append(Run("ablation", "${ablation.random_student}", "ablation.random_student", ("gkd",),
                       pipeline="ablation", tag="random_init"))
    return out


def seed_runs(cfg, setting: str) -> list[Run]:
    """The runs of one setting that the multi-seed table averages, in `seeds` order."""
    by_seed = {r.seed: r for r in runs(cfg) if r.setting == setting and r.budget == 1}
    return [by_seed[None if s == cfg.seed else s] for s in cfg.seeds]


# ---------------------------------------------------------------------------------------------- stages
@functools.lru_cache(maxsize=None)
def declared_reads(module: str) -> contract.Reads | None:
    """The stage module's ``READS``, read from its source (no import: stage modules import torch)."""
    return contract.declared(module_source(module))


def stage_params(cfg, module: str, *, student: str = "${student}", method: str | None = None,
                 labelled=()) -> list[str]:
    """The params keys of one stage: what its module's ``READS`` declares, for its student selector (a DVC
    template), its method and the methods whose row labels it prints."""
    reads = declared_reads(module)
    if reads is None:  # a stage that reads no params (the views)
        return []
    preset = None
    if reads.recipe:
        name = resolve(student if reads.recipe == "student" else "${teacher}", selector_values(cfg))
        preset = cfg.raw[f"{reads.recipe}s"][name]
    keys = contract.params_keys(reads, cfg, student=student, method=method, labelled=tuple(labelled),
                                recipe_preset=preset)
    # a field params.yaml leaves at its default has no key to depend on (DVC refuses a missing param); once
    # set there, `gkd dag` lists it (and `gkd dag --check` says dvc.yaml is stale until then)
    return [k for k in keys if in_params(cfg.raw, resolve(k, selector_values(cfg)))]


def in_params(raw: dict, key: str) -> bool:
    node = raw
    for part in key.split("."):
        if not isinstance(node, dict) or part not in node:
            return False
        node = node[part]
    return True


def common_flags(*selectors: str) -> list[tuple[str, str]]:
    return [("--params", PARAMS)] + [(f"--{s}", f"${{{s}}}") for s in selectors]


def selector_values(cfg) -> dict[str, str]:
    """What the DVC templates in stage commands and paths stand for (Snakemake fills them in)."""
    return {"benchmark": cfg.benchmark_name, "teacher": cfg.teacher_name, "student": cfg.student_name,
            "f2f.student": cfg.f2f.student, "ablation.random_student": cfg.ablation.random_student}


def manifest_stages(cfg) -> list[Stage]:
    """The raw files `prepare` reads, listed at every run (real benchmarks only: `synthetic` reads none, and
    an always-changed stage would leave its DAG never up to date). A dvc.yaml rendered for `synthetic`
    therefore does not track a real benchmark selected with `-S` (prepare warns; README)."""
    if cfg.benchmark.adapter != "real":
        return []
    return [Stage("manifest", "gkd.stages.manifest", common_flags("benchmark") + [("--out", MANIFEST)], [],
                  stage_params(cfg, "gkd.stages.manifest"), outs=[MANIFEST], family="data",
                  launch=False, always_changed=True)]


def shared_stages(cfg) -> list[Stage]:
    """Raw-data manifest, data, teacher and the F2L student's initialisation: shared by every run."""
    manifest = manifest_stages(cfg)
    raw = [MANIFEST] if manifest else []  # prepare reruns when the listed raw files change
    return manifest + [
        Stage("prepare", "gkd.stages.prepare", common_flags("benchmark") + [("--manifest", m) for m in raw] + [
            ("--out", DATA), ("--samples", "plots/${benchmark}_samples.png")],
            raw, stage_params(cfg, "gkd.stages.prepare"), outs=[DATA],
            plots=["plots/${benchmark}_samples.png"], family="data", launch=False,
            uses=[ADAPTERS.module(cfg.benchmark.adapter)]),  # the selected benchmark's adapter, not every reader
        Stage("teacher_weights", "gkd.stages.teacher_weights", common_flags("benchmark", "teacher") + [
            ("--data", DATA), ("--out", TEACHER)],
            [DATA], stage_params(cfg, "gkd.stages.teacher_weights"), outs=[TEACHER], family="teacher",
            namespace=TEACHER_NS),
        student_weights_stage(cfg, "student_weights", "${student}"),
        Stage("teacher_features", "gkd.stages.teacher_features", common_flags("benchmark", "teacher") + [
            ("--data", DATA), ("--teacher-weights", TEACHER), ("--out", FEATURES)],
            [DATA, TEACHER], stage_params(cfg, "gkd.stages.teacher_features"),
            outs=[FEATURES], family="teacher", namespace=TEACHER_NS),
        Stage("teacher_task", "gkd.stages.teacher_task", common_flags("benchmark", "teacher") + [
            ("--data", DATA), ("--teacher-weights", TEACHER), ("--out", TEACHER_TASK), ("--live", f"logs/{TEACHER_NS}/teacher_task")],
            [DATA, TEACHER], stage_params(cfg, "gkd.stages.teacher_task"), outs=[TEACHER_TASK], plots=[f"logs/{TEACHER_NS}/teacher_task"], family="teacher", namespace=TEACHER_NS),
        Stage("evaluate_teacher", "gkd.stages.evaluate", common_flags("benchmark") + [
            ("--model", TEACHER_TASK), ("--data", DATA), ("--out", TEACHER_METRICS), ("--name", "teacher"),
            ("--per-image", TEACHER_PER_IMAGE)],
            [DATA, TEACHER_TASK], stage_params(cfg, "gkd.stages.evaluate"), outs=[TEACHER_PER_IMAGE],
            metrics=[TEACHER_METRICS], family="evaluate", namespace=TEACHER_NS),
    ]


def student_weights_stage(cfg, name: str, student: str, pipeline: str = "main") -> Stage:
    """A student's initialisation; its preset's `weights` picks the recipe (the one pretraining section listed)."""
    return Stage(name, "gkd.stages.student_weights", common_flags("benchmark") + [
        ("--student", student), ("--data", DATA), ("--out", student_init(student))],
        [DATA], stage_params(cfg, "gkd.stages.student_weights", student=student), outs=[student_init(student)],
        family="teacher", pipeline=pipeline, namespace=f"${{benchmark}}/{student}")


def run_stages(cfg, run: Run, shapes: dict[str, dict]) -> list[Stage]:
    """Stage 1, stage 2 / task training and evaluation of every method of ``run``, and its report."""
    student_dir = student_init(run.student)
    pair = common_flags("benchmark", "teacher") + [("--student", run.student)]
    out: list[Stage] = []
    if (run.setting == "f2f" or run.tag) and run.seed is None:
        out.append(student_weights_stage(cfg, run.stage("student_weights"), run.student, run.pipeline))
    for method in run.methods:
        model, live = run.model(method), run.live(method)
        method_flags = pair + [("--method", method)] + run.run_flags + [("--data", DATA)]
        code = [method_module(cfg, method)]  # the one method the stage builds (its module, by name)
        if shapes[method]["stage1"]:
            # stage 1's teacher: the cache of fixed views, or the teacher itself run in the stage (online). The
            # teacher's weights are always an input, so `dvc exp run -S benchmark=<a real preset>` can switch a
            # dvc.yaml rendered in cache mode to online; the cache only where the selected benchmark uses it
            # (so an online-only DAG builds none).
            cache = [("--features", FEATURES)] if cfg.teacher_mode == "cache" else []
            out.append(Stage(
                run.stage("distill", method), "gkd.stages.distill", method_flags + [
                    ("--student-weights", student_dir), ("--teacher-weights", TEACHER), *cache,
                    ("--out", f"{model}/stage1"), ("--live", f"{live}/stage1")],
                [DATA, student_dir, TEACHER, *[path for _, path in cache]],
                stage_params(cfg, "gkd.stages.distill", student=run.student, method=method),
                outs=[f"{model}/stage1"], plots=[f"{live}/stage1"], pipeline=run.pipeline, namespace=run.namespace,
                uses=code))
            init = f"{model}/stage1"
        else:  # one-stage task training from the student's initialisation
            init = student_dir
        # the teacher outputs its task training reads: the stages that cache its signals (gkd.features.SIGNALS)
        teacher = [TEACHER_OUTPUTS[k] for k in TEACHER_OUTPUTS if k in shapes[method]["teacher"]]
        out.append(Stage(
            run.stage("adapt", method), "gkd.stages.adapt", method_flags + [("--init", init)] + teacher + [
                ("--out", f"{model}/stage2"), ("--live", f"{live}/stage2")],
            [DATA, init] + [path for _, path in teacher],
            stage_params(cfg, "gkd.stages.adapt", student=run.student, method=method),
            outs=[f"{model}/stage2"], plots=[f"{live}/stage2"], pipeline=run.pipeline, namespace=run.namespace,
            uses=code))
        out.append(Stage(
            run.stage("evaluate", method), "gkd.stages.evaluate", common_flags("benchmark") + [
                ("--model", f"{model}/stage2"), ("--data", DATA), ("--out", run.metrics(method)), ("--name", run.row(method)),
                ("--per-image", run.per_image(method))],
            [DATA, f"{model}/stage2"], stage_params(cfg, "gkd.stages.evaluate"), outs=[run.per_image(method)],
            metrics=[run.metrics(method)], family="evaluate", pipeline=run.pipeline, namespace=run.namespace))
    if run.seed is None and run.budget == 1 and not run.tag:
        out.append(report_stage(cfg, run, shapes))
    return out


def main_run(cfg, setting: str = "f2l") -> Run:
    """The single-seed, 1x run of a setting (its report is the main pipeline's table)."""
    return next(r for r in runs(cfg) if r.setting == setting and r.seed is None and r.budget == 1 and not r.tag)


def view_stage(name: str, tables: list[str], namespace: str, pipeline: str) -> Stage:
    """The selected experiment's ``tables`` copied to their fixed paths in results/ (gkd.stages.view)."""
    fixed = [view(t) for t in tables]
    return Stage(name, "gkd.stages.view", [("--tables", " ".join(tables)), ("--out", " ".join(fixed))], tables,
                 stage_params(None, "gkd.stages.view"), outs=fixed, family="data", launch=False, pipeline=pipeline, namespace=namespace)


def labelled_stage_params(cfg, module: str, methods) -> dict:
    """params and code of a stage that prints the row labels of ``methods`` (a report, the qualitative
    figure): their label keys and their modules (a label is its method's ``label``)."""
    methods = list(dict.fromkeys(methods))
    return {"params": stage_params(cfg, module, labelled=methods),
            "uses": sorted({method_module(cfg, m) for m in methods})}


def report_stage(cfg, run: Run, shapes: dict[str, dict]) -> Stage:
    """The setting's table and figures, and the stage-1 fidelity table of its label-free methods."""
    variants = [r for r in runs(cfg) if r.setting == run.setting and r.tag and r.seed is None and r.budget == 1]
    rows = [TEACHER_METRICS] + ([main_run(cfg).metrics("gkd")] if run.setting == "ablation" else [])
    rows += [run.metrics(m) for m in run.methods] + [v.metrics(m) for v in variants for m in v.methods]
    per_image = [TEACHER_PER_IMAGE] + ([main_run(cfg).per_image("gkd")] if run.setting == "ablation" else [])
    per_image += [run.per_image(m) for m in run.methods] + [v.per_image(m) for v in variants for m in v.methods]
    spread = [REFERENCE_SPREAD[run.setting]] if run.setting in REFERENCE_SPREAD else []
    stage1 = [f"{r.model(m)}/stage1" for r in [run, *variants] for m in r.methods if shapes[m]["stage1"]]
    name = run.setting
    table = run.output("results", f"{name}_table.csv")
    fidelity = run.output("results", "stage1_fidelity.csv" if name == "f2l" else f"{name}_stage1_fidelity.csv")
    fidelity_png = run.output("plots", "stage1_fidelity.png" if name == "f2l" else f"{name}_stage1_fidelity.png")
    flags = common_flags("benchmark", "teacher") + [("--student", run.student), ("--setting", name),
                                                    ("--metrics", " ".join(rows))]
    outs = [table]
    plots = [run.output("plots", f"{name}_table.png"), run.output("plots", f"{name}_radar.png")]
    if stage1:
        flags.append(("--stage1", " ".join(stage1)))
        outs.append(fidelity)
        plots.append(fidelity_png)
    flags += [("--out", table), ("--plot", plots[0]), ("--radar", plots[1])]
    if stage1:
        flags += [("--fidelity-out", fidelity), ("--fidelity-plot", fidelity_png)]
    flags.append(("--per-image", " ".join(per_image)))
    flags += [("--spread", path) for path in spread]
    # every student row's segmenter against the teacher's on held-out generic (not the ablation's: its rows are
    # GKD variants beside the main run's GKD, whose check the F2L table has). Declared whatever the benchmark:
    # `dvc exp run -S benchmark=...` switches the data under one dvc.yaml, so the stage finds out whether the
    # prepared data holds out generic images (gkd.agreement.checks) and leaves the cells empty if not
    agreement = []
    if run.setting != "ablation":
        models = [f"{run.model(m)}/stage2" for m in run.methods]
        agreement = models + [TEACHER_TASK, DATA]
        agreement_csv = run.output("results", f"{name}_agreement.csv")
        flags += [("--agreement-models", " ".join(models)), ("--teacher-task", TEACHER_TASK), ("--data", DATA),
                  ("--agreement-out", agreement_csv)]
        outs.append(agreement_csv)
    labelled = (["gkd"] if run.setting == "ablation" else []) + list(run.methods) + \
        [m for v in variants for m in v.methods]
    return Stage(run.stage("report"), "gkd.stages.report", flags, rows + stage1 + per_image + spread + agreement,
                 outs=outs, plots=plots, family="data", launch=False, pipeline=run.pipeline, namespace=run.namespace,
                 **labelled_stage_params(cfg, "gkd.stages.report", labelled))


def seeds_report_stage(cfg, setting: str, shapes: dict[str, dict]) -> Stage:
    chosen = seed_runs(cfg, setting)
    methods = list(chosen[0].methods)
    metrics = [TEACHER_METRICS] + [r.metrics(m) for r in chosen for m in methods]
    per_image = [TEACHER_PER_IMAGE] + [r.per_image(m) for r in chosen for m in methods]
    stage1 = [f"{r.model(m)}/stage1" for r in chosen for m in methods if shapes[m]["stage1"]]
    # the check of each stage-1 run beside its fidelity: its segmenter against the teacher's on held-out generic
    stage2 = [f"{r.model(m)}/stage2" for r in chosen for m in methods if shapes[m]["stage1"]]
    out = chosen[0].output("results", f"{setting}_seeds.csv")
    spread = chosen[0].output("results", f"{setting}_spread.csv")
    plot = chosen[0].output("plots", f"{setting}_seeds.png")
    check = [chosen[0].output("results", f"{setting}_stage1_check.csv"),
             chosen[0].output("plots", f"{setting}_stage1_check.png")] if stage1 else []
    flags = common_flags("benchmark", "teacher") + [("--student", chosen[0].student), ("--setting", setting),
                                                    ("--metrics", " ".join(metrics)),
                                                    ("--per-image", " ".join(per_image))]
    flags += [("--stage1", " ".join(stage1)), ("--stage2", " ".join(stage2)), ("--teacher-task", TEACHER_TASK),
              ("--data", DATA)] if stage1 else []
    flags += [("--out", out), ("--plot", plot), ("--spread-out", spread)]
    flags += [("--check-out", check[0]), ("--check-plot", check[1])] if stage1 else []
    return Stage(f"{'' if setting == 'f2l' else setting + '-'}seeds-report", "gkd.stages.seeds_report", flags,
                 metrics + per_image + stage1 + (stage2 + [TEACHER_TASK, DATA] if stage1 else []),
                 outs=[out, spread] + check[:1], plots=[plot] + check[1:],
                 family="data", launch=False, pipeline="seeds", namespace=chosen[0].namespace,
                 **labelled_stage_params(cfg, "gkd.stages.seeds_report", methods))


def budget_report_stage(cfg, shapes: dict[str, dict]) -> Stage:
    chosen = sorted([r for r in runs(cfg) if r.setting == "f2l" and r.seed is None], key=lambda r: r.budget)
    metrics = [r.metrics(m) for r in chosen for m in r.methods]
    stage1 = [f"{r.model(m)}/stage1" for r in chosen for m in r.methods if shapes[m]["stage1"]]
    out, plot = chosen[0].output("results", "budget_table.csv"), chosen[0].output("plots", "budget_curve.png")
    return Stage("budget-report", "gkd.stages.budget_report", common_flags("benchmark", "teacher") + [
        ("--student", "${student}"), ("--metrics", " ".join(metrics)), ("--stage1", " ".join(stage1)),
        ("--out", out), ("--plot", plot)],
        metrics + stage1, outs=[out], plots=[plot], family="data", launch=False, pipeline="budget",
        namespace=chosen[0].namespace, **labelled_stage_params(cfg, "gkd.stages.budget_report", chosen[0].methods))


def qualitative_stage(cfg) -> Stage | None:
    """Image / ground truth / a few methods' predictions, one row per domain (F2L models)."""
    shown = [m for m in QUALITATIVE if m in cfg.methods]
    if not shown:
        return None
    run = main_run(cfg)
    models = [f"{run.model(m)}/stage2" for m in shown]
    out = qualitative_plot(cfg)
    return Stage("qualitative", "gkd.stages.qualitative", common_flags("benchmark") + [
        ("--student", "${student}"), ("--data", DATA), ("--models", " ".join(models)),
        ("--out", out)], [DATA] + models, plots=[out], family="data", namespace=run.namespace,
        **labelled_stage_params(cfg, "gkd.stages.qualitative", shown))


def qualitative_plot(cfg) -> str:
    return main_run(cfg).output("plots", "qualitative.png")


def default_targets(cfg) -> list[str]:
    """`snakemake` without a target (rule all) and `dvc repro`'s main pipeline: the F2L and F2F tables and
    the qualitative figure."""
    out = ["results/f2l_table.csv"] + (["results/f2f_table.csv"] if cfg.f2f.methods else [])
    return out + ([qualitative_plot(cfg)] if qualitative_stage(cfg) else [])


def stages(cfg, shapes: dict[str, dict]) -> list[Stage]:
    """Every stage of every pipeline; ``shapes``: each method's dependency shape (``method_shapes``)."""
    out = shared_stages(cfg)
    for run in runs(cfg):
        out += run_stages(cfg, run, shapes)
    q = qualitative_stage(cfg)
    if q is not None:
        out.append(q)
    if len(cfg.seeds) > 1:
        out += [seeds_report_stage(cfg, s, shapes) for s in ("f2l", "f2f") if s == "f2l" or cfg.f2f.methods]
    if len(cfg.budget.multipliers) > 1:
        out.append(budget_report_stage(cfg, shapes))
    if not any(FEATURES in s.deps for s in out):  # online stage 1 and no feature-KD method: no cache to build
        out = [s for s in out if s.name != "teacher_features"]
    reports = [s for s in out if s.module in REPORTS]
    return out + [view_stage(r.name.replace("report", "view"), r.outs, r.namespace, r.pipeline) for r in reports]


# ---------------------------------------------------------------------------------------------- method shapes
def method_shapes(cfg, methods) -> dict[str, dict]:
    """Each method's dependency shape: whether it has a stage 1, and the stages whose cached teacher signals its
    task training reads (``gkd.features.SIGNALS``: logits → teacher_task; tokens, shallow, last →
    teacher_features). Imports the methods, and torch."""
    from gkd.features import SIGNALS
    from gkd.methods import method_options
    out = {}
    for name in methods:
        cls, _ = method_options(cfg, name)
        out[name] = {"stage1": bool(cls.stage1), "teacher": sorted({SIGNALS[s].stage for s in cls.teacher_inputs})}
    return out


def all_methods(cfg) -> list[str]:
    """Every method some pipeline of ``cfg`` runs (the ablation's random-init row is GKD)."""
    names = [*cfg.methods, *cfg.f2f.methods, *cfg.ablation.methods] + (["gkd"] if cfg.ablation.random_student else [])
    return list(dict.fromkeys(names))


def shapes_of(cfg) -> dict[str, dict]:
    """Plan-time validation of every method, the decoder and the adapters (``gkd.validate``), then the shapes."""
    from gkd.validate import check_registered  # imports the registries, and torch
    check_registered(cfg)
    return method_shapes(cfg, all_methods(cfg))


# where the Snakefile and `gkd dag` keep the memoised shapes (relative to the workspace root)
SHAPES_CACHE = ".snakemake/gkd/shapes.json"


def cached_shapes(cfg, cache: str | Path = SHAPES_CACHE) -> dict:
    """``shapes_of`` memoised on disk, keyed by the params and every source file of the package.

    Importing torch is ~2 s of a ~5 s no-op ``snakemake`` run; with the shapes cached, parsing the
    Snakefile imports no torch, and ``gkd dag`` (which shares the cache) none either. Any change to
    params.yaml, ``--config`` or the code recomputes them (and so validates the params again).
    """
    key = hashlib.sha256(json.dumps(cfg.raw, sort_keys=True, default=str).encode())
    for path in sorted(PACKAGE.rglob("*.py")):
        key.update(path.relative_to(PACKAGE).as_posix().encode() + b"\0" + path.read_bytes())
    digest = key.hexdigest()
    cache = Path(cache)
    try:
        stored = json.loads(cache.read_text())
        if stored.get("key") == digest:
            return stored["shapes"]
    except (OSError, ValueError, AttributeError):
        pass  # missing or unreadable: recompute
    result = shapes_of(cfg)
    io.write_json(cache, {"key": digest, "shapes": result})
    return result


# ---------------------------------------------------------------------------------------------- rendering
def resolve(text: str, values: dict[str, str]) -> str:
    """Fill ``${key}`` templates (Snakemake: the selectors of its config)."""
    return re.sub(r"\$\{([\w.]+)\}", lambda m: values[m.group(1)], text)


def cached(kind: str, path: str) -> bool:
    """Models, data and the dvclive folders go to the DVC cache (and through a remote); metrics JSON and
    figures are small files git keeps."""
    return kind == "outs" or (kind == "plots" and not Path(path).suffix)


def render_dvc(all_stages: list[Stage], pipeline: str) -> str:
    """One pipeline's dvc.yaml: one line per flag, dependencies listed (code first), no anchors."""
    path = PIPELINES[pipeline]
    depth = path.count("/")
    lines = ["# GENERATED by `gkd dag` from src/gkd/dag.py (the stage table) and params.yaml: edit those and rerun",
             "# `gkd dag`; tests/test_dag.py fails if this file is stale or drifts from the Snakemake rules."]
    if depth:
        lines += [f"# Opt-in pipeline: dvc repro {path}", "vars:", f"  - {'../' * depth}params.yaml"]
    lines.append("stages:")
    for s in (s for s in all_stages if s.pipeline == pipeline):
        lines.append(f"  {s.name}:")
        if depth:
            lines.append(f"    wdir: {'../' * depth}".rstrip("/"))
        head = f"{LAUNCH if s.launch else PY} {s.module}"
        lines.append("    cmd: >-")
        lines.append(f"      {head}")
        lines += [f"      {flag} {value}" if value else f"      {flag}" for flag, value in s.flags]
        if s.always_changed:
            lines.append("    always_changed: true")
        if s.code + s.deps:
            lines.append("    deps:")
            lines += [f"      - {d}" for d in s.code + s.deps]
        if s.params:
            lines.append("    params:")
            lines += [f"      - {p}" for p in s.params]
        for key, items in (("outs", s.outs), ("plots", s.plots), ("metrics", s.metrics)):
            if items:
                lines.append(f"    {key}:")
                lines += [f"      - {o}" if cached(key, o) else f"      - {o}:\n          cache: false" for o in items]
    return "\n".join(lines) + "\n"


def dvc_files(cfg, shapes) -> dict[str, str]:
    """Path → text of every pipeline's dvc.yaml (pipelines without stages get none)."""
    all_stages = stages(cfg, shapes)
    return {path: render_dvc(all_stages, name) for name, path in PIPELINES.items()
            if any(s.pipeline == name for s in all_stages)}
