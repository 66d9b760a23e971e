"""`gkd show`: the tables of results/ as aligned text or raw CSV, a chosen experiment by selectors, and one
clear error listing what exists when nothing matches (fake CSVs in tmp_path; no pipeline run)."""
from __future__ import annotations

from pathlib import Path

import pytest

from gkd import cli, show
from gkd.errors import GKDError

F2L = "Method,Params (M),city,night,Avg\nTeacher,21.82,41.4,18.19,29.8\n\"Student (frozen, no KD)\",2.96,20.79,3.24,12.0\n"
FIDELITY = "Method,phase,domain,term,baseline,mse,r2,r2_init\n+GKD,1b,sim,fea,1.515,1.079,0.29,\n"
SEEDS = "Method,n,Avg mean,Avg std\n+GKD,3,11.01,1.98\n"


def workspace(tmp_path: Path) -> Path:
    """results/ with the fixed-path copies of the selected experiment, and two namespaced experiments."""
    results = tmp_path / "results"
    for folder, tables in {results: {"f2l_table": F2L, "stage1_fidelity": FIDELITY, "f2l_seeds": SEEDS},
                           results / "synthetic/dinov2_s14/vit_t6": {"f2l_table": F2L, "stage1_fidelity": FIDELITY},
                           results / "synthetic/dinov2_s14/vit_s": {"f2l_table": F2L.replace("2.96", "21.7")}}.items():
        folder.mkdir(parents=True, exist_ok=True)
        for name, text in tables.items():
            (folder / f"{name}.csv").write_text(text)
    (results / "bench.json").write_text("{}")  # not a table
    (tmp_path / "params.yaml").write_text("benchmark: synthetic\nteacher: dinov2_s14\nstudent: vit_t6\n")
    return results


def test_every_table_as_aligned_text_main_table_first(tmp_path):
    results = workspace(tmp_path)
    text = show.show(results)
    titles = [line for line in text.splitlines() if line.endswith(".csv")]
    assert titles == [str(results / f"{n}.csv") for n in ("f2l_table", "stage1_fidelity", "f2l_seeds")]
    lines = text.split("\n\n")[0].splitlines()
    header, rule, teacher, student = lines[1:]
    assert header.split("  ")[0].rstrip() == "Method" and set(rule) == {"-", " "}
    assert len({len(rule)} | {len(line) for line in (header, teacher, student)}) <= 2  # padded columns
    assert "Student (frozen, no KD)" in student            # a quoted cell with a comma stays one cell
    assert teacher.index("21.82") + len("21.82") == student.index("2.96") + len("2.96")  # numbers right-aligned
    assert teacher.startswith("Teacher ") and student.startswith("Student")               # text left-aligned


def test_one_table_by_name_and_raw_csv(tmp_path):
    results = workspace(tmp_path)
    assert show.show(results, "f2l_seeds").splitlines()[0] == str(results / "f2l_seeds.csv")
    assert show.show(results, "f2l_seeds.csv") == show.show(results, "f2l_seeds")
    assert show.show(results, "f2l_table", as_csv=True) == F2L.rstrip("\n")  # the file, unchanged
    several = show.show(results, as_csv=True)
    assert several.startswith(f"# {results / 'f2l_table.csv'}\n{F2L.splitlines()[0]}") and several.count("# ") == 3


def test_selectors_pick_the_namespaced_experiment(tmp_path):
    results, params = workspace(tmp_path), tmp_path / "params.yaml"
    text = show.show(results, selectors={"student": "vit_s"}, params=params)  # the rest from params.yaml
    assert text.splitlines()[0] == str(results / "synthetic/dinov2_s14/vit_s/f2l_table.csv")
    assert "21.7" in text and "stage1_fidelity" not in text
    full = {"benchmark": "synthetic", "teacher": "dinov2_s14", "student": "vit_t6"}
    assert show.show(results, "stage1_fidelity", selectors=full, params=tmp_path / "absent.yaml").startswith(
        str(results / "synthetic/dinov2_s14/vit_t6/stage1_fidelity.csv"))


def test_nothing_matches_lists_what_exists(tmp_path):
    results, params = workspace(tmp_path), tmp_path / "params.yaml"
    with pytest.raises(GKDError, match=r"no table 'budget_table' in .*tables there: f2l_table, stage1_fidelity, "
                                       r"f2l_seeds"):
        show.show(results, "budget_table")
    with pytest.raises(GKDError) as err:
        show.show(results, selectors={"student": "deit_s"}, params=params)
    message = str(err.value)
    assert "synthetic/dinov2_s14/deit_s" in message and "synthetic/dinov2_s14/vit_s/" in message
    assert "synthetic/dinov2_s14/vit_t6/" in message and "--student" in message
    with pytest.raises(GKDError, match="--teacher"):
        show.show(results, selectors={"student": "vit_s"}, params=tmp_path / "absent.yaml")
    with pytest.raises(GKDError, match="nothing has run in this workspace yet.*snakemake"):
        show.show(tmp_path / "empty")


def test_the_command_prints_and_fails_in_one_line(tmp_path, capsys, monkeypatch):
    results = workspace(tmp_path)
    monkeypatch.chdir(tmp_path)
    assert cli.main(["show", "f2l_table"]) == 0
    assert capsys.readouterr().out.splitlines()[0] == "results/f2l_table.csv"
    assert cli.main(["show", "--student", "vit_s", "--csv"]) == 0
    assert capsys.readouterr().out == F2L.replace("2.96", "21.7")
    assert cli.main(["show", "nope", "--results", str(results)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: no table 'nope'") and err.count("\n") == 1


def test_numbers_line_up_on_the_decimal_point_and_blanks_stay_blank():
    text = show.aligned([["Method", "Avg", "r2_init"], ["a", "12.6", ""], ["bb", "8.05", "-0.1"], ["c", "100", ""]])
    header, rule, *rows = text.splitlines()
    assert rows[0].index(".") == rows[1].index(".")                     # " 12.6 " over "  8.05"
    assert rows[2].index("100") + 3 == rows[0].index(".")               # a whole number ends at the point
    assert rows[0].split() == ["a", "12.6"] and rows[1].split() == ["bb", "8.05", "-0.1"]
    assert show.aligned([]) == ""


def test_the_main_command_ends_with_the_table_and_a_verdict_per_stage1_method(tmp_path):
    from gkd.show import summary
    (tmp_path / "f2l_table.csv").write_text("Method,Avg,Avg ± images (95 %)\nTeacher,30.9,0.3\n+GKD,15.9,0.2\n")
    rows = ["Method,phase,domain,term,baseline,mse,r2,r2_init"]
    for phase, domains in (("1a", ("generic", "sim")), ("1b", ("city", "generic", "sim"))):
        for d in domains:
            rows += [f"+GKD,{phase},{d},token,1.0,0.9,0.1,", f"+GKD,{phase},{d},fea,1.0,1.2,-0.2,",
                     f"+GKD,{phase},{d},patch,1.0,0.5,0.4,", f"+GKD,{phase},{d},cka_teacher,,,0.25,0.17",
                     f"+GKD,{phase},{d},cka_init,,,0.61,"]
    (tmp_path / "stage1_fidelity.csv").write_text("\n".join(rows) + "\n")
    text = summary(tmp_path)
    assert text.splitlines()[0] == str(tmp_path / "f2l_table.csv") and "+GKD" in text and "bootstrap" in text
    assert text.splitlines()[-1] == ("+GKD: stage 1 (1b) on held-out sim: 2 of 3 loss terms below the constant baseline "
                                     "(R² token/fea/patch 0.10/-0.20/0.40); on held-out generic, CKA to the teacher "
                                     "0.25 (before stage 1 0.17), to its own initialisation 0.61")
    (tmp_path / "f2l_agreement.csv").write_text("Method,teacher_agreement,teacher_agreement (sim val, control)\n"
                                                    "Student (frozen),14.74,50.1\n+GKD,16.2,49.0\n")
    last = summary(tmp_path).splitlines()[-1]  # the rows' agreement with the teacher, highest first
    assert last.startswith("Agreement with the teacher's segmenter on held-out generic")
    assert last.endswith(": +GKD 16.20, Student (frozen) 14.74")
    (tmp_path / "f2l_agreement.csv").write_text("Method,teacher_agreement\n+GKD,\n")  # no held-out generic images
    assert summary(tmp_path).splitlines()[-1].endswith("not measured (the benchmark holds out no generic images)")
    assert summary(tmp_path / "nothing") == ""
