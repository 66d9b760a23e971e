"""Every method's whole path (distill → adapt → evaluate) in-process on tiny data, plus the report."""
from __future__ import annotations

import json

import pandas as pd
import pytest

from conftest import ALL, tiny_params

# the terms each method's task training logs besides ce, loss and lr (a method missing here is a KeyError)
TASK_TERMS = {"student_only": set(), "student_frozen": set(), "vanilla_kd": {"kd"}, "cwd": {"cwd"},
              "afdcd": {"fd", "ctr", "kd"}, "vitkd": {"low", "gen"}, "proteus": set(), "gkd": set()}
STAGE1_TERMS = {"token", "fea", "patch", "loss", "lr"}  # per phase, of the label-free methods
# where the teacher signals a method reads are cached (gkd.features.SIGNALS): it is given those folders only
TEACHER_FLAGS = {"logits": "--teacher-task", "tokens": "--features", "shallow": "--features", "last": "--features"}


def logged(live, prefix="train") -> set[str]:
    return {p.stem for p in (live / "plots" / "metrics" / prefix).glob("*.tsv")}


@pytest.mark.parametrize("method", ALL + ["student_frozen"])
def test_method_trains_and_evaluates(ws, method):
    from gkd.config import load
    from gkd.methods import build_method
    from gkd.stages import adapt, distill, evaluate
    p = ["--params", str(ws / "params.yaml")]
    data, init = str(ws / "data"), str(ws / "student")
    built = build_method(load(ws / "params.yaml"), method)
    if built.stage1:
        distill.main(p + ["--method", method, "--data", data, "--student-weights", init, "--features",
                          str(ws / "feat"), "--out", str(ws / method / "stage1"), "--live", str(ws / method / "live1")])
        init = str(ws / method / "stage1")
        assert json.loads((ws / method / "stage1" / "backbone.json").read_text())["method"] == method
        for phase in ("1a", "1b"):
            assert logged(ws / method / "live1", f"train/{phase}") == STAGE1_TERMS, phase
    # only the teacher outputs its declared signals live in: a method reading another one fails here
    folders = {"--teacher-task": str(ws / "teacher_task"), "--features": str(ws / "feat")}
    teacher = [x for flag in sorted({TEACHER_FLAGS[s] for s in built.teacher_inputs}) for x in (flag, folders[flag])]
    adapt.main(p + ["--method", method, "--data", data, "--init", init, *teacher, "--out", str(ws / method / "stage2"),
                    "--live", str(ws / method / "live2")])
    evaluate.main(p + ["--model", str(ws / method / "stage2"), "--data", data, "--out",
                       str(ws / "metrics" / f"{method}.json"), "--name", method])
    m = json.loads((ws / "metrics" / f"{method}.json").read_text())
    assert set(m["domains"]) == {"sim", "city", "night", "fog", "rain", "snow"}
    assert all(0 <= v <= 100 for v in m["domains"].values())
    assert m["avg"] == pytest.approx(sum(m["domains"][t] for t in m["targets"]) / 5, abs=1e-3)
    # every loss term is logged, and nothing else (the terms are what people debug)
    assert logged(ws / method / "live2") == {"loss", "ce", "lr"} | TASK_TERMS[method]


def test_report_orders_rows_like_the_paper(tmp_path):
    """Rows in params order after the Teacher, labelled by display name, whatever order the files were made
    in; metrics files out of that order are refused (a stale dvc.yaml)."""
    from gkd import contract
    from gkd.config import ConfigError, from_dict
    from gkd.stages import report
    params = tiny_params()
    params["methods"] = ALL
    cfg = contract.StageConfig(from_dict(params), report.READS, "report")
    files = []
    for k, name in enumerate(["teacher", *ALL]):
        path = tmp_path / f"{name}.json"
        path.write_text(json.dumps({"name": name, "params_m": 20.0 if name == "teacher" else 5.0 + k,
                                    "domains": {"city": 10.0 + k, "sim": 30.0}, "source_domain": "sim",
                                    "targets": ["city"], "avg": 10.0 + k, "source": 30.0}))
        files.append(path)
    report.run(cfg, files, tmp_path / "table.csv", None, None, "t")
    df = pd.read_csv(tmp_path / "table.csv")
    assert df["Method"].tolist() == ["Teacher", "Student-only", "+Vanilla KD", "+CWD", "+Af-DCD", "+ViTKD",
                                     "+Proteus", "+GKD"]
    assert df["Avg"].tolist() == [10.0 + k for k in range(8)] and df.loc[0, "Params (M)"] == 20.0
    with pytest.raises(ConfigError, match="do not match params.yaml's"):
        report.run(cfg, [files[0], *files[:0:-1]], tmp_path / "x.csv", None, None, "t")
