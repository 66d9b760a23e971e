"""Each stage reads exactly the params it declares (``READS``, gkd.contract): the config a stage sees holds
nothing else, the front-ends' params come from the same declaration, and a stage imports only its method."""
from __future__ import annotations

import importlib
import json
import pkgutil
import subprocess
import sys

import pytest

from conftest import ROOT, tiny_params
from gkd import contract
from gkd.config import from_dict
from gkd.errors import ConfigError, ContractError

STAGE_MODULES = sorted(m.name for m in pkgutil.iter_modules([str(ROOT / "src/gkd/stages")])
                       if m.name not in ("__init__", "args", "common"))


@pytest.fixture(scope="module")
def cfg():
    return from_dict(tiny_params())


def test_an_undeclared_read_is_one_error_naming_the_key_and_the_declared_ones(cfg):
    view = contract.StageConfig(cfg, contract.Reads("seed", "benchmark.patch_size", "views"), "demo")
    assert view.seed == cfg.seed and view.benchmark.patch_size == 14 and view.views == cfg.views
    assert view.benchmark_name == "synthetic" and view.threads == cfg.threads  # selectors, threads: ambient
    with pytest.raises(ContractError, match=r"stage demo read distill, which its READS does not declare "
                                            r"\(declared: .*benchmark\.patch_size.*seed"):
        view.distill
    with pytest.raises(ContractError, match=r"read benchmark\.image_size"):
        view.benchmark.image_size
    with pytest.raises(ContractError, match=r"read teacher_features,"):  # a property reads through the guard
        view.teacher_mode
    assert contract.StageConfig(cfg, contract.Reads("benchmark.adapter", "teacher_features.mode"),
                                "demo").teacher_mode == "cache"
    assert view.raw == {"seed": cfg.raw["seed"], "views": cfg.raw["views"]}  # only wholly declared sections


def test_method_entries_are_the_selected_one_or_the_label_fields(cfg):
    selected = contract.StageConfig(cfg, contract.Reads(methods="selected"), "adapt", method="gkd")
    assert selected.method("gkd") == cfg.method("gkd") and list(selected.method_configs) == ["gkd"]
    with pytest.raises(ContractError, match=r"method_configs\.student_only.*selected 'gkd'"):
        selected.method("student_only")
    with pytest.raises(ContractError, match="method_configs"):
        contract.StageConfig(cfg, contract.Reads("seed"), "evaluate").method("gkd")
    labels = contract.StageConfig(cfg, contract.Reads(methods="labels"), "report")
    assert labels.method("gkd").options == {} and labels.method("student_frozen").options == {"frozen": True}


def test_every_row_label_comes_from_its_declared_label_fields():
    """The reports see a method entry's label fields only (LABEL_FIELDS): every label of params.yaml must be
    the same from those as from the whole entry, or a label would read an option its reports do not rerun on."""
    from gkd import validate
    from gkd.tables import row_label
    full = validate.load(ROOT / "params.yaml")
    labels = contract.StageConfig(full, contract.Reads(methods="labels"), "report")
    assert len(full.method_configs) > 10
    for name in full.method_configs:
        assert row_label(labels, name) == row_label(full, name), name


def test_a_bad_declaration_names_the_key_and_the_choices():
    with pytest.raises(ConfigError, match=r"READS key 'distil'.*valid choices: .*distill"):
        contract.Reads("distil")
    with pytest.raises(ConfigError, match=r"READS methods 'one'.*valid choices: , labels, selected"):
        contract.Reads(methods="one")


def test_the_dag_reads_each_stage_modules_READS_without_importing_it():
    """``gkd.dag`` parses READS from the source (stage modules import torch); the parse is the object the
    module builds, and every stage module that reads params declares it."""
    from gkd import dag
    for name in STAGE_MODULES:
        module = importlib.import_module(f"gkd.stages.{name}")
        declared = dag.declared_reads(f"gkd.stages.{name}")
        if name == "view":  # copies tables: reads no params
            assert declared is None and not hasattr(module, "READS")
        else:
            assert declared == module.READS, name


def test_params_of_every_stage_are_its_declared_keys(cfg):
    """No stage lists params by hand: each is its module's READS with its student, method and rows filled in."""
    from gkd import dag
    shapes = dag.shapes_of(cfg)
    by_name = {s.name: s for s in dag.stages(cfg, shapes)}
    assert by_name["distill-gkd"].params == [
        "seed", "benchmarks.${benchmark}.patch_size", "benchmarks.${benchmark}.adapter", "students.${student}",
        "views", "teacher_features", "distill", "evaluate.batch_size", "runtime", "method_configs.gkd"]
    assert by_name["f2f-adapt-gkd"].params[-1] == "method_configs.gkd" and \
        "students.${f2f.student}" not in by_name["f2f-adapt-gkd"].params  # adapt reads the artifact, not the preset
    assert by_name["f2f-student_weights"].params == ["seed", "benchmarks.${benchmark}.patch_size",
                                                     "students.${f2f.student}", "runtime", "pretrain"]
    assert by_name["student_weights"].params[-1] == "student_pretrain"  # vit_t6: weights classify
    assert by_name["evaluate-gkd"].params == ["evaluate", "runtime"]
    assert by_name["report"].params == ["seed", "methods", "f2f.methods", "ablation",
                                        "method_configs.student_only.algo", "method_configs.gkd.algo"]
    for stage in by_name.values():
        module = stage.module.rsplit(".", 1)[-1]
        reads = dag.declared_reads(stage.module)
        assert (reads is None) == (module == "view") and (reads is not None or stage.params == []), stage.name


def test_a_kd_method_reads_the_teacher_outputs_of_the_signals_it_declares():
    """SIGNALS says which stage caches each signal: logit KD reads teacher_task only, feature KD the feature
    cache only, Af-DCD both; a label-free method's task training reads neither."""
    from gkd import dag
    params = tiny_params()
    params["methods"] = ["student_only", "vanilla_kd", "cwd", "afdcd", "vitkd", "proteus", "gkd"]
    cfg = from_dict(params)
    by_name = {s.name: s for s in dag.stages(cfg, dag.shapes_of(cfg))}
    reads = {m: {f for f, _ in by_name[f"adapt-{m}"].flags} & {"--features", "--teacher-task"} for m in params["methods"]}
    assert reads == {"student_only": set(), "vanilla_kd": {"--teacher-task"}, "cwd": {"--teacher-task"},
                     "afdcd": {"--features", "--teacher-task"}, "vitkd": {"--features"}, "proteus": set(), "gkd": set()}
    assert dag.FEATURES not in by_name["adapt-cwd"].deps and dag.TEACHER_TASK in by_name["adapt-cwd"].deps


def test_a_stage_imports_only_its_own_method():
    """The generic stage modules' closures hold no method; each per-method stage adds its method's module;
    Proteus and GKD share code only through gkd.methods.representation."""
    from gkd import dag
    for module in ("gkd.stages.distill", "gkd.stages.adapt", "gkd.stages.evaluate", "gkd.stages.prepare"):
        closure = dag.code_deps(module)
        assert not [f for f in closure if f.rsplit("/", 1)[-1][:-3] in dag_methods()], (module, closure)
    gkd, proteus = dag.code_deps("gkd.stages.distill", "gkd.methods.gkd"), dag.code_deps("gkd.methods.proteus")
    assert "src/gkd/methods/gkd.py" in gkd and "src/gkd/methods/proteus.py" not in gkd
    assert "src/gkd/methods/gkd.py" not in proteus and "src/gkd/methods/representation.py" in proteus
    # and at run time: distilling with gkd loads gkd's module and no other method's
    code = ("import sys; from gkd.config import load; from gkd.methods import build_method; "
            "build_method(load('params.yaml'), 'gkd_no_mask'); "
            "print(sorted(m for m in sys.modules if m.startswith('gkd.methods.')))")
    loaded = json.loads(subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True,
                                       check=True).stdout.replace("'", '"'))
    assert loaded == ["gkd.methods.base", "gkd.methods.gkd", "gkd.methods.heads", "gkd.methods.losses",
                      "gkd.methods.representation"]


def dag_methods() -> set[str]:
    from gkd.methods import METHODS
    return set(METHODS.choices())


def test_stage_functions_run_on_a_config_holding_only_their_declared_keys(cfg, tmp_path):
    """The pure parts of the stages, on the view their READS gives them: the phase plan (distill), the row
    order and labels (report) — without running a pipeline stage."""
    from gkd.data.prepared import BenchmarkMeta
    from gkd.stages import distill, report
    meta = BenchmarkMeta(name="synthetic", classes=["a"], palette=[[0, 0, 0]], source="sim", targets=["city"],
                image_size=56, splits={"sim": {"train": 4}, "generic": {"train": 4}})
    view = contract.StageConfig(cfg, distill.READS, "distill", method="gkd")
    assert [p[0] for p in distill.phases(view, meta)] == ["generic", "train"]
    assert isinstance(distill.stage1_method(view, "gkd").mask_ratio, float)
    with pytest.raises(ConfigError, match="has no stage 1"):
        distill.stage1_method(contract.StageConfig(cfg, distill.READS, "distill", method="student_only"),
                              "student_only")
    rows = []
    for name in ["teacher", *cfg.methods]:
        path = tmp_path / f"{name}.json"
        path.write_text(json.dumps({"name": name, "params_m": 1.0, "domains": {"city": 10.0, "sim": 20.0},
                                    "source_domain": "sim", "targets": ["city"], "avg": 10.0, "source": 20.0}))
        rows.append(path)
    out = tmp_path / "table.csv"
    report.run(contract.StageConfig(cfg, report.READS, "report"), rows, out, None, None, "t")
    assert [line.split(",")[0] for line in out.read_text().splitlines()[1:]] == ["Teacher", "Student-only", "+GKD"]


def test_gkd_check_validates_every_method_without_running_anything(tmp_path, capsys, monkeypatch):
    """Plan-time validation: a bad option of a method the stages would only import when they train it is
    one error naming the key, before any stage starts."""
    import yaml
    from gkd import cli
    monkeypatch.chdir(ROOT)
    assert cli.main(["check"]) == 0
    assert "params.yaml: valid — 14 method entries" in capsys.readouterr().out
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    params["method_configs"]["afdcd"]["groups"] = "many"
    (tmp_path / "bad.yaml").write_text(yaml.safe_dump(params))
    assert cli.main(["check", "--params", str(tmp_path / "bad.yaml")]) == 2
    assert "method_configs.afdcd.groups: expected int, got 'many'" in capsys.readouterr().err
