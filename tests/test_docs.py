"""The manual holds: every relative link in README.md and docs/*.md resolves (to a file, and to a heading where
it names one), every `gkd` command they quote parses with the real parser, and every `snakemake` command
parses with Snakemake's own; (slow) the targets they quote plan with `snakemake --dry-run` on the tiny config."""
from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest

from conftest import ROOT, copy_repo, run
from gkd import cli

PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
FENCE = re.compile(r"^```(\w*)\n(.*?)^```", re.S | re.M)
LINK = re.compile(r"(?<!!)\[[^\]]*\]\(([^)\s]+)\)|!\[[^\]]*\]\(([^)\s]+)\)")
INLINE = re.compile(r"`((?:gkd|snakemake) [^`]*)`")
OPERATORS = {"&&", "||", ";", "|", "&"}
PLACEHOLDER = re.compile(r"<[^>]*>|\.\.\.|…")  # `<exp>`, `...`: a shape, not a command to run


def prose(text: str) -> str:
    """The page without its fenced code blocks (a link or span inside one is an example, not a reference)."""
    return FENCE.sub("", text)


def slug(heading: str) -> str:
    """GitHub's anchor of a heading: lower case, punctuation dropped, spaces to hyphens."""
    text = re.sub(r"`|\*\*|\[([^\]]*)\]\([^)]*\)", r"\1", heading.strip().lower())
    return re.sub(r"[^\w\- ]", "", text).replace(" ", "-")


def anchors(page: Path) -> set[str]:
    return {slug(m.group(1)) for m in re.finditer(r"^#{1,6} (.+)$", prose(page.read_text()), re.M)}


def relative_links(page: Path) -> list[str]:
    found = [a or b for a, b in LINK.findall(prose(page.read_text()))]
    return [t for t in found if not re.match(r"^[a-z][a-z0-9+.-]*:", t)]  # http:, https:, mailto:


def commands(text: str, tools=("gkd", "snakemake")) -> list[list[str]]:
    """The commands of ``tools`` in the page's ```bash blocks, as argument lists: continuation lines joined,
    comments dropped, chains (&&, ;, |) split."""
    out = []
    for lang, block in FENCE.findall(text):
        if lang != "bash":
            continue
        for line in block.replace("\\\n", " ").splitlines():
            lexer = shlex.shlex(line, posix=True, punctuation_chars=True)
            lexer.whitespace_split = True
            cmd: list[str] = []
            for token in [*lexer, ";"]:
                if token in OPERATORS:
                    if cmd and cmd[0] in tools and not any(PLACEHOLDER.search(t) for t in cmd):
                        out.append(cmd)
                    cmd = []
                else:
                    cmd.append(token)
    return out


def inline_commands(text: str) -> list[list[str]]:
    """`gkd …` / `snakemake …` spans in the prose (often a fragment: only their subcommand and flags count)."""
    return [shlex.split(span) for span in INLINE.findall(prose(text)) if not PLACEHOLDER.search(span)]


def quoted(kind: str, inline: bool = False) -> list[tuple[str, list[str]]]:
    found = []
    for page in PAGES:
        text = page.read_text()
        found += [(page.name, c) for c in commands(text) if c[0] == kind]
        if inline:
            found += [(page.name, c) for c in inline_commands(text) if c[0] == kind]
    return found


@pytest.mark.parametrize("page", PAGES, ids=[p.name for p in PAGES])
def test_every_relative_link_resolves(page):
    broken = []
    for target in relative_links(page):
        path, _, anchor = target.partition("#")
        dest = (page.parent / path).resolve() if path else page
        if not dest.exists():
            broken.append(f"{target} (no {dest.relative_to(ROOT) if dest.is_relative_to(ROOT) else dest})")
        elif anchor and dest.suffix == ".md" and anchor not in anchors(dest):
            broken.append(f"{target} (no heading #{anchor} in {dest.name})")
    assert not broken, f"{page.name}: broken links: {broken}"


def test_the_docs_pages_are_linked_from_somewhere():
    linked = {(page.parent / t.partition("#")[0]).resolve() for page in PAGES for t in relative_links(page)}
    orphans = [p.name for p in PAGES[1:] if p.resolve() not in linked]
    assert not orphans, f"docs pages no other page links to: {orphans}"


def test_the_checks_see_the_commands():
    """The parsers below must have something to check (a regex that matched nothing would pass silently)."""
    assert len(quoted("gkd")) >= 10 and len(quoted("snakemake")) >= 5
    assert commands("```bash\nA=1 gkd show  # c\npip install x && snakemake --cores 1 \\\n  t.csv\n```") == \
        [["snakemake", "--cores", "1", "t.csv"]]


def test_every_quoted_gkd_command_parses(capsys):
    parser = cli.build_parser()
    subcommands = set(next(a for a in parser._actions if a.dest == "command").choices)
    bad = []
    for page, cmd in quoted("gkd", inline=True):
        args = cmd[1:]
        sub = next((a for a in args if not a.startswith("-")), None)
        if sub is not None and sub not in subcommands:
            bad.append(f"{page}: {' '.join(cmd)} (no subcommand {sub!r}; there are {', '.join(sorted(subcommands))})")
            continue
        try:
            with pytest.raises(SystemExit) as done:
                cli.main(([sub] if sub else []) + ["--help"])
            if done.value.code != 0:
                bad.append(f"{page}: {' '.join(cmd)} (--help exited {done.value.code})")
        finally:
            capsys.readouterr()
    for page, cmd in quoted("gkd"):  # a bash block's command is whole: all of it must parse
        try:
            parser.parse_args(cmd[1:])
        except SystemExit as err:
            bad.append(f"{page}: {' '.join(cmd)} (does not parse: exit {err.code}: {capsys.readouterr().err.strip()})")
    assert not bad, "\n".join(bad)


def test_every_quoted_snakemake_command_parses(capsys):
    from snakemake.cli import get_argument_parser
    bad = []
    for page, cmd in quoted("snakemake", inline=True):
        try:
            get_argument_parser().parse_args(cmd[1:])
        except SystemExit as err:
            bad.append(f"{page}: {' '.join(cmd)} (exit {err.code}: {capsys.readouterr().err.strip()[-300:]})")
    assert not bad, "\n".join(bad)


def dry_runs() -> dict[tuple[str, ...], set[str]]:
    """The targets the docs quote, grouped by the `--config` selectors they come with. Selectors of a
    benchmark other than `synthetic` need its raw data and real weights: their targets plan without them."""
    from snakemake.cli import get_argument_parser
    groups: dict[tuple[str, ...], set[str]] = {}
    for _, cmd in quoted("snakemake", inline=True):
        args = get_argument_parser().parse_args(cmd[1:])
        config = tuple(sorted(args.config or ()))
        if any(c.startswith("benchmark=") and c != "benchmark=synthetic" for c in config):
            config = ()
        groups.setdefault(config, set()).update(args.targets or ["all"])  # no target: rule all
    return groups


@pytest.mark.slow
def test_quoted_snakemake_targets_plan_on_the_tiny_config(tmp_path):
    repo = copy_repo(tmp_path / "repo")
    groups = dry_runs()
    assert () in groups and "results/f2l_table.csv" in groups[()]
    for config, targets in sorted(groups.items()):
        cmd = ["snakemake", "--dry-run", "--cores", "1", *sorted(targets),
               "--configfile", "tests/tiny.yaml"] + (["--config", *config] if config else [])
        run(cmd, cwd=repo, timeout=600)
