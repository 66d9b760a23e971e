"""params.yaml speaks for itself in an editor: its first line names the schema, every key of the schema has
a description (the comment on its field in gkd.config), and the modules its comments name exist."""
from __future__ import annotations

import importlib.util
import re
from dataclasses import dataclass

from conftest import ROOT

from gkd import schema


def test_every_key_of_the_schema_has_a_description():
    assert schema.undescribed(schema.params_schema()) == []


def test_the_description_checker_finds_a_key_without_one():
    spec = {"properties": {"a": {"type": "object", "description": "x",
                                 "additionalProperties": {"properties": {"b": {"type": "integer"}}}}}}
    assert schema.undescribed(spec) == ["a.<name>.b"]


def test_descriptions_come_from_the_field_comments():
    @dataclass
    class Example:
        plain: int
        short: int = 1          # one line
        long: str = "x"         # a comment wrapped
                                # by hand: continued
        # a comment of its own line is not a field's
        after: bool = False     # after it

    assert schema.field_comments(Example) == {"short": "one line", "long": "a comment wrapped by hand: continued",
                                              "after": "after it"}
    distill = schema.params_schema()["properties"]["distill"]["properties"]
    assert distill["head_lr"]["description"].startswith("the stage-1 heads' lr")


def test_params_yaml_names_its_schema_on_the_first_line():
    first = (ROOT / "params.yaml").read_text().splitlines()[0]
    assert first == f"# yaml-language-server: $schema={schema.SCHEMA_PATH}"
    assert (ROOT / schema.SCHEMA_PATH).is_file()


def test_modules_named_in_params_yaml_exist():
    named = set(re.findall(r"\bgkd(?:\.[a-z_0-9]+)+", (ROOT / "params.yaml").read_text()))
    assert named, "params.yaml names no module (the test would prove nothing)"
    missing = sorted(m for m in named if importlib.util.find_spec(m) is None)
    assert not missing, f"params.yaml names modules that do not exist: {missing}"


def test_docs_pages_named_in_params_yaml_exist():
    named = set(re.findall(r"\bdocs/[\w.-]+\.md\b", (ROOT / "params.yaml").read_text()))
    assert named and all((ROOT / page).is_file() for page in named), sorted(named)
