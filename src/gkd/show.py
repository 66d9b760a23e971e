"""`gkd show`: a workspace's result tables as aligned text (or the raw CSV), without a spreadsheet.

``results/<table>.csv`` holds the tables of the experiment params.yaml selects (the `view` stages copy
them there); every experiment also keeps its own copies in ``results/<benchmark>/<teacher>/<student>/``
(the F2F tables under the F2F student), which the selectors pick. Torch- and pandas-free: it only reads
small CSV files, so it answers at once.
"""
from __future__ import annotations

import csv
import io
import math
from pathlib import Path
from typing import Optional

from gkd.errors import ArtifactError, ConfigError

# The tables in the order a reader wants them: the main table, then whether stage 1 distilled, then the
# opt-in pipelines'. Any other CSV in the folder follows in name order.
TABLE_ORDER = ("f2l_table", "stage1_fidelity", "f2l_agreement", "f2f_table", "f2f_stage1_fidelity",
               "f2f_agreement", "f2l_seeds", "f2f_seeds",
               "budget_table", "ablation_table", "ablation_stage1_fidelity")
SELECTORS = ("benchmark", "teacher", "student")


def experiment_folder(results: Path, selectors: dict[str, Optional[str]], params: Path) -> Path:
    """``results/`` itself when no selector is given; else ``results/<benchmark>/<teacher>/<student>/``, the
    selectors not given taken from the params file (as the pipeline would select them)."""
    if not any(selectors.values()):
        return results
    missing = [key for key in SELECTORS if not selectors.get(key)]
    if missing:
        import yaml
        raw = yaml.safe_load(params.read_text()) if params.is_file() else None
        for key in missing:
            if not isinstance(raw, dict) or not raw.get(key):
                source = f"{params} has no `{key}`" if params.is_file() else f"{params} not found"
                raise ConfigError(f"--{key} not given and {source} to take it from: give "
                                  f"--{' --'.join(missing)} (or --params)")
            selectors = {**selectors, key: str(raw[key])}
    return results.joinpath(*(selectors[key] for key in SELECTORS))


def _order(path: Path) -> tuple[int, str]:
    return (TABLE_ORDER.index(path.stem) if path.stem in TABLE_ORDER else len(TABLE_ORDER), path.stem)


def tables_in(folder: Path) -> list[Path]:
    """The CSV tables directly in ``folder``, main table first."""
    return sorted(folder.glob("*.csv"), key=_order) if folder.is_dir() else []


def experiments(results: Path) -> list[Path]:
    """The experiment folders (``<benchmark>/<teacher>/<student>``) under ``results`` that hold a table."""
    return sorted({p.parent for p in results.glob("*/*/*/*.csv")})


def _nothing_here(folder: Path, results: Path) -> str:
    """What to say when ``folder`` holds no table: which folders do, and how to make one."""
    found = experiments(results)
    if tables_in(results):
        found = [results] + found
    if not found:
        return (f"no tables in {folder}/: nothing has run in this workspace yet; make the main table with "
                f"`snakemake --cores all results/f2l_table.csv` (or `dvc repro`)")
    listed = ", ".join(f"{p}/" for p in found)
    hint = " (choose one with --benchmark/--teacher/--student)" if any(p != results for p in found) else ""
    return f"no tables in {folder}/; folders with tables: {listed}{hint}"


def pick(folder: Path, name: Optional[str], results: Path) -> list[Path]:
    """Every table of ``folder``, or the one called ``name`` (with or without ``.csv``)."""
    tables = tables_in(folder)
    if not tables:
        raise ArtifactError(_nothing_here(folder, results))
    if name is None:
        return tables
    stem = name[:-4] if name.endswith(".csv") else name
    chosen = [t for t in tables if t.stem == stem]
    if not chosen:
        raise ArtifactError(f"no table {name!r} in {folder}/; tables there: {', '.join(t.stem for t in tables)}")
    return chosen


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _on_the_point(cells: list[str]) -> list[str]:
    """A column of numbers written as the CSV has them, padded so that their decimal points line up."""
    parts = [c.partition(".") for c in cells]
    whole = max(len(w) for w, _, _ in parts)
    frac = max(len(dot + f) for _, dot, f in parts)
    return [(w.rjust(whole) + (dot + f).ljust(frac)) if w or dot else "" for w, dot, f in parts]


def aligned(rows: list[list[str]]) -> str:
    """Rows of cells as a text table: columns padded to their widest cell, a column of numbers aligned on
    the decimal point and to the right, text to the left, a rule under the header."""
    if not rows:
        return ""
    width = max(len(r) for r in rows)
    header, *body = [r + [""] * (width - len(r)) for r in rows]
    columns = [[r[i] for r in body] for i in range(width)]
    numeric = [any(col) and all(_is_number(c) for c in col if c) for col in columns]
    columns = [_on_the_point(col) if num else col for col, num in zip(columns, numeric)]
    sizes = [max([len(header[i])] + [len(c) for c in columns[i]]) for i in range(width)]

    def line(cells: list[str]) -> str:
        return "  ".join(c.rjust(s) if num else c.ljust(s) for c, s, num in zip(cells, sizes, numeric)).rstrip()

    body = [[columns[i][j] for i in range(width)] for j in range(len(body))]
    return "\n".join([line(header), "  ".join("-" * s for s in sizes), *(line(r) for r in body)])


def render(path: Path) -> str:
    """One table: its path as a title, then the aligned text."""
    return f"{path}\n{aligned(list(csv.reader(io.StringIO(path.read_text()))))}"


def show(results: Path, name: Optional[str] = None, as_csv: bool = False,
         selectors: Optional[dict[str, Optional[str]]] = None, params: Path = Path("params.yaml")) -> str:
    """The text ``gkd show`` prints: the chosen tables, one blank line apart. ``as_csv``: one table is its
    file unchanged (to pipe on); several are each preceded by a ``# <path>`` line."""
    folder = experiment_folder(results, selectors or {}, params)
    tables = pick(folder, name, results)
    if as_csv:
        if len(tables) == 1:
            return tables[0].read_text().rstrip("\n")
        return "\n\n".join(f"# {path}\n{path.read_text().rstrip()}" for path in tables)
    return "\n\n".join(render(path) for path in tables)


def _rows(path: Path) -> list[dict[str, str]]:
    return list(csv.DictReader(io.StringIO(path.read_text())))


def _num(text: Optional[str]) -> float:
    try:
        return float(text)
    except (TypeError, ValueError):
        return float("nan")


def verdicts(fidelity_csv: Path) -> list[str]:
    """One line per stage-1 method from its fidelity table (last phase): did the loss terms end below the
    constant-mean baseline on held-out source images, and how teacher-like the backbone is on held-out generic
    images after stage 1 (linear CKA, 1 = the teacher up to a rotation) against before it."""
    rows = _rows(fidelity_csv)
    out = []
    for method in dict.fromkeys(r["Method"] for r in rows):
        mine = [r for r in rows if r["Method"] == method]
        last = max(r["phase"] for r in mine)
        at = {(r["domain"], r["term"]): r for r in mine if r["phase"] == last}
        # phase 1a is checked on held-out generic and source images only; without 1a, the source is
        # the one domain every phase has (the embedded benchmark's is `sim`)
        first = min(r["phase"] for r in mine)
        candidates = sorted({r["domain"] for r in mine if r["phase"] == first} - {"generic"}) if first != last else []
        source = candidates[0] if len(candidates) == 1 else "sim"
        terms = [at.get((source, t)) for t in ("token", "fea", "patch")]
        below = sum(1 for r in terms if r and _num(r["mse"]) < _num(r["baseline"]))
        r2 = "/".join(f"{_num(r['r2']):.2f}" if r else "-" for r in terms)
        line = (f"{method}: stage 1 ({last}) on held-out {source}: {below} of 3 loss terms below the constant baseline "
                f"(R² token/fea/patch {r2})")
        cka = at.get(("generic", "cka_teacher"))
        if cka:
            line += (f"; on held-out generic, CKA to the teacher {_num(cka['r2']):.2f} "
                     f"(before stage 1 {_num(cka.get('r2_init')):.2f})")
        moved = at.get(("generic", "cka_init"))
        if moved:
            line += f", to its own initialisation {_num(moved['r2']):.2f}"
        out.append(line)
    return out


def agreement_line(agreement_csv: Path) -> str:
    """Each student row's agreement with the teacher's segmenter on held-out generic, highest first."""
    rows = [r for r in _rows(agreement_csv) if not math.isnan(_num(r["teacher_agreement"]))]
    if not rows:
        return "Agreement with the teacher's segmenter: not measured (the benchmark holds out no generic images)"
    rows.sort(key=lambda r: -_num(r["teacher_agreement"]))
    return ("Agreement with the teacher's segmenter on held-out generic (mIoU of the arg-max; label-free; a weak rank "
            "check of GKD's stage-1 runs, no predictor of a run's score; docs/results.md): "
            + ", ".join(f"{r['Method']} {_num(r['teacher_agreement']):.2f}" for r in rows))


def summary(results: Path = Path("results")) -> str:
    """What the main command ends with: the F2L table, the spread columns explained, the stage-1 verdicts and
    the rows' agreement with the teacher."""
    table, fidelity = results / "f2l_table.csv", results / "stage1_fidelity.csv"
    agreement = results / "f2l_agreement.csv"
    if not table.is_file():
        return ""
    lines = [render(table)]
    header = next(csv.reader(io.StringIO(table.read_text())))
    if "Avg ± images (95 %)" in header:
        lines.append("Avg ± images: half-width of the 95 % bootstrap interval over this run's test images; Avg sd over "
                     "seeds / runs: measured by the multi-seed runs (results/reference_spread.csv), empty where "
                     "not measured." + (" Avg sd over student inits / draws: the same row from other draws of the "
                                        "student's initialisation (benchmarks/init_draw.py), which the seeds keep fixed."
                                        if "draws" in header else ""))
    if fidelity.is_file():
        lines += ["", "Stage 1, label-free checks (docs/pipeline.md, 'Fidelity'):", *verdicts(fidelity)]
    if agreement.is_file():
        lines.append(agreement_line(agreement))
    return "\n".join(lines)
