"""The `gkd` command speaks to users: --help lists every subcommand with an example, --version works, every
option says what it does, fixed values are choices, and `gkd dag` still works as the old name of render-dvc."""
from __future__ import annotations

import argparse

import pytest

from gkd import cli


def subcommands(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    (action,) = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    return dict(action.choices)  # aliases included: "dag" maps to the render-dvc parser


def test_every_subcommand_and_option_has_help_text():
    parser = cli.build_parser()
    (action,) = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    undocumented = [c.dest for c in action._choices_actions if not (c.help or "").strip()]
    for name, sub in subcommands(parser).items():
        undocumented += [f"{name} {'/'.join(a.option_strings) or a.dest}" for a in sub._actions
                         if not isinstance(a, argparse._HelpAction)
                         and (a.help is None or a.help == argparse.SUPPRESS or not a.help.strip())]
    assert not undocumented, f"options without help text: {undocumented}"


def test_help_lists_every_subcommand_with_an_example(capsys):
    with pytest.raises(SystemExit) as done:
        cli.main(["--help"])
    assert done.value.code == 0
    text = capsys.readouterr().out
    examples = text.split("examples", 1)[1]
    names = {sub.prog.split()[-1] for sub in subcommands(cli.build_parser()).values()}  # canonical names only
    missing = sorted(n for n in names if f"gkd {n} " not in examples and f"gkd {n}\n" not in examples)
    assert not missing, f"subcommands without an example in `gkd --help`: {missing}"
    for name in names:
        assert name in text.split("examples", 1)[0]


def test_version_prints_the_package_version(capsys):
    with pytest.raises(SystemExit) as done:
        cli.main(["--version"])
    assert done.value.code == 0
    out = capsys.readouterr().out.strip()
    assert out == f"gkd {cli.version()}" and out.split()[1][0].isdigit()


def test_every_subcommand_help_works(capsys):
    for name in subcommands(cli.build_parser()):
        with pytest.raises(SystemExit) as done:
            cli.main([name, "--help"])
        assert done.value.code == 0, name
        assert capsys.readouterr().out.startswith("usage: gkd ")


def test_dag_is_an_alias_of_render_dvc():
    parser = cli.build_parser()
    old, new = parser.parse_args(["dag", "--check"]), parser.parse_args(["render-dvc", "--check"])
    assert old.fn is new.fn is cli.cmd_render_dvc and old.check and new.check


def test_fixed_values_are_choices_that_agree_with_the_code(capsys):
    from gkd.data.convert_isprs import DATASETS
    assert tuple(sorted(DATASETS)) == tuple(sorted(cli.ISPRS_DATASETS))
    sub = subcommands(cli.build_parser())["convert-isprs"]
    (dataset,) = [a for a in sub._actions if "--dataset" in a.option_strings]
    assert all(name in dataset.metavar for name in DATASETS)  # --help shows the choices
    rc = cli.main(["convert-isprs", "--dataset", "potsdm", "--archives", "a", "--out", "b"])
    err = capsys.readouterr().err
    assert rc == 2 and err.count("\n") == 1, err  # the command's own one-line refusal, no usage block
    assert "'potsdm'" in err and "potsdam" in err and "vaihingen" in err


def test_bench_teacher_choices_are_the_gpu_bench_teachers():
    pytest.importorskip("torch")
    from gkd.bench_gpu import TEACHERS
    assert tuple(TEACHERS) == cli.GPU_TEACHERS
    sub = subcommands(cli.build_parser())["bench"]
    (teacher,) = [a for a in sub._actions if "--teacher" in a.option_strings]
    assert all(name in teacher.metavar for name in TEACHERS) and teacher.default in TEACHERS
