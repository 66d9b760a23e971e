"""The tables' rows and labels, shared by the report stages and the qualitative figure."""
from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from gkd.methods import build_method

VARIANTS = {"random_init": "randomly initialised student"}  # gkd.dag Run.tag → what the row changes


def row_label(cfg, name: str) -> str:
    """Teacher → "Teacher"; a method → its display name ("+GKD"); an ablation variant → its key too; a
    student variant (``gkd@random_init``) → the method's label and what differs."""
    if name == "teacher":
        return "Teacher"
    method, _, tag = name.partition("@")
    label = build_method(cfg, method).label(method)
    return f"{label} [{VARIANTS.get(tag, tag)}]" if tag else label


def table(rows: list[tuple[str, dict]]) -> pd.DataFrame:
    records = []
    for label, m in rows:
        domains, source = m["domains"], m["source_domain"]
        rec = {"Method": label, "Params (M)": m["params_m"]}
        rec.update({d: domains[d] for d in m["targets"]})
        rec["Avg"] = m["avg"]
        if source in domains:
            rec[f"{source} (source val)"] = domains[source]
        records.append(rec)
    df = pd.DataFrame.from_records(records)
    num = [c for c in df.columns if c not in ("Method",)]
    df[num] = df[num].astype(float).round(2)
    return df


def expected_rows(cfg, setting: str) -> list[str]:
    if setting == "f2l":
        return ["teacher", *cfg.methods]
    if setting == "f2f":
        return ["teacher", *cfg.f2f.methods]
    return ["teacher", "gkd", *cfg.ablation.methods] + (["gkd@random_init"] if cfg.ablation.random_student else [])


def fidelity_table(cfg, stage1_dirs: list[Path]) -> pd.DataFrame:
    """Long table: Method, phase, domain, term, mse, baseline, r2 (from each stage-1 fidelity.json); the
    linear-probe rows (term probe_cls / probe_patch) have r2 and r2_init (the student before stage 1)."""
    records = []
    for directory in stage1_dirs:
        report = json.loads((Path(directory) / "fidelity.json").read_text())
        variant = report.get("student") not in (None, cfg.student_name) and \
            report.get("student") == cfg.ablation.random_student
        label = row_label(cfg, report["method"] + ("@random_init" if variant else ""))
        for phase, result in report["phases"].items():
            for domain, terms in result["domains"].items():
                for term, v in terms.items():
                    records.append({"Method": label, "phase": phase, "domain": domain, "term": term, **v})
                for term, r2 in result.get("probe", {}).get(domain, {}).items():
                    records.append({"Method": label, "phase": phase, "domain": domain, "term": term, "r2": r2,
                                    "r2_init": report["init_probe"][domain].get(term)})
    return pd.DataFrame.from_records(records)



def title(cfg, setting: str) -> str:
    what = {"f2l": "F2L", "f2f": "F2F", "ablation": "GKD ablations"}[setting]
    return f"{what} on `{cfg.benchmark_name}`: {cfg.teacher_name} → {cfg.student_name}"
