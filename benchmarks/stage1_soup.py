"""Weight soups of GKD stage-1 seeds: the seed spread averaged in the weights instead of in the table.

Issue 21's criterion 3 asks for a stage 1 whose target Avg does not depend on the seed (sd ≤ 1.0 over five
seeds). Every lever screened so far (docs/results.md, "Levers tried on stage 1") left GKD's seed sd at 1.1-5.2;
the seeds' agreement showed why: two stage-1 seeds end as far from each other (patch-token CKA 0.47 on held-out
``generic``) as from the initialisation they share, so each seed ends at its own point. All of them start from
the same student initialisation, which is where averaging weights is known to keep a working network
(fine-tuned models of one pre-trained start are linearly connected: Wortsman et al. 2022, "Model soups"). A
soup of k stage-1 backbones (the uniform mean of their tensors; heads are not averaged — stage 2 never reads
them) is one backbone, put through the DAG's own `adapt` (frozen backbone, decoder on source labels) and
`evaluate`, and checked label-free as stage 1 checks itself: the linear probe R² and CKA to the teacher on
held-out ``generic`` and ``sim`` (the teacher feature cache's held-out tokens), CKA to the initialisation, and
the agreement with the teacher's segmenter on held-out ``generic`` (``gkd.agreement``).

The prediction, written down before any soup was run and before stage-1 seeds 5-14 on this host finished:
1. A soup still distils: its CKA to the teacher on held-out ``generic`` is at least its members' mean, and its
   linear probe R² on held-out ``sim`` at least its members' mean − 0.05. If not, a soup is the
   initialisation with the distillation averaged out, and its steadiness would not be a stable stage 1.
2. Over the disjoint soups of k = 3 (seeds 0-2, 3-5, 6-8, 9-11, 12-14: five independent soups), the target Avg
   has sd ≤ 1.0, which a mean of three independent seeds (sd 2.85 / √3 = 1.65) would not give by averaging
   alone; and their mean is not below the members' mean by more than 1.0.
Either failing means a soup of three is not the stable stage 1. k = 2 and k = 5 are reported beside it.

    python benchmarks/stage1_soup.py --workspace WS \
        --members WS/models/synthetic/dinov2_s14/vit_t6/gkd WS/models/synthetic/dinov2_s14/vit_t6/seed1/gkd ... \
        --k 2 3 5 --work WS/soups --out results/stage1_soup.csv

Members are DAG method folders (``stage1/`` and ``stage2/`` in them, their metrics at the DAG's mirror path);
their soups are formed from consecutive members in the order given (disjoint groups; a remainder is left out).
Each soup is a method folder ``WORK/k<k>-<group>/gkd`` that the DAG's own ``adapt`` and ``evaluate`` stages of GKD
read and write, run in ``--workspace`` (its params.yaml and prepared data), with stage 2's seed from params.yaml for
every soup; target Avg is reported, never used to choose.
"""
from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
sys.path.insert(0, str(Path(__file__).resolve().parent))
from gkd import agreement, dag, features, fidelity, io  # noqa: E402
from gkd.config import load  # noqa: E402
from gkd.data.prepared import read_meta  # noqa: E402
from gkd.models.artifacts import load_backbone  # noqa: E402
from gkd.models.backbone import load_state_file  # noqa: E402
from gkd.stages.distill import backbone_report, heldout_sets  # noqa: E402
from init_draw import draw_stages, output_of  # noqa: E402
from stage1_screen import metrics_file, recipe_runs  # noqa: E402

CHECK_DOMAINS = ("generic", "sim")  # label-free and no target image: what may judge a soup
COLUMNS = {"probe_patch": "probe"}  # backbone_report's names → this table's


def cook(members: list[Path], out: Path) -> None:
    """``out/stage1`` (``out`` a method folder): the uniform mean of the members' stage-1 backbone tensors, with the first's backbone.json."""
    states = [load_state_file(m / "stage1" / "backbone.safetensors") for m in members]
    keys = set(states[0])
    for m, s in zip(members, states):
        if set(s) != keys:
            raise SystemExit(f"--members: {str(m)!r} has other tensors than {str(members[0])!r}; not one architecture")
    soup = {k: torch.stack([s[k].double() for s in states]).mean(0).to(states[0][k].dtype) for k in sorted(keys)}
    info = json.loads((members[0] / "stage1" / "backbone.json").read_text())
    info["soup"] = [str(m) for m in members]
    with io.atomic_path(out / "stage1", is_dir=True) as tmp:
        io.save_safetensors(tmp / "backbone.safetensors", soup)
        io.write_json(tmp / "backbone.json", info)


class Workspace:
    """Where the members were trained: the DAG's paths for one benchmark, teacher and student, and its stages."""

    def __init__(self, root: Path, benchmark: str, teacher: str, student: str):
        self.root = root.resolve()
        if not (self.root / "params.yaml").is_file():
            raise SystemExit(f"--workspace: {str(root)!r} holds no params.yaml; is it a workspace that ran the DAG?")
        self.cfg = load(self.root / "params.yaml", benchmark=benchmark, teacher=teacher, student=student)
        values = dag.selector_values(self.cfg)
        self.data, self.features, self.teacher_task, self.init = (
            self.root / dag.resolve(path, values) for path in (dag.DATA, dag.FEATURES, dag.TEACHER_TASK,
                                                                 dag.student_init(student)))
        for path in (self.data, self.features, self.init, self.teacher_task):
            if not path.is_dir():
                raise SystemExit(f"--workspace: {str(path)!r} is missing; is {str(root)!r} a workspace that ran "
                                 f"benchmark {benchmark!r}, teacher {teacher!r}, student {student!r}?")

    def adapt_and_evaluate(self, folder: Path) -> None:
        """The DAG's own ``adapt`` and ``evaluate`` of GKD (``init_draw.draw_stages``), reading the soup's
        ``folder/gkd/stage1`` and writing beside it, run in the workspace."""
        shapes = dag.method_shapes(self.cfg, ["gkd"])
        for stage in draw_stages(self.cfg, shapes, ["gkd"], folder.resolve()):
            if stage.module.endswith(("adapt", "evaluate")) and not output_of(stage).exists():
                command = stage.command_with("params.yaml").split(" ", 1)  # "python -m ...": this interpreter's
                subprocess.run(f"{sys.executable} {command[1]}", shell=True, check=True, cwd=self.root)


class Checks:
    """The label-free checks of one backbone folder (``stage1/``) and its segmenter (``stage2/``)."""

    def __init__(self, ws: Workspace, batch_size: int = 50):
        meta = read_meta(ws.data)
        self.held = {d: (ds, features.TeacherCache(ws.features / features.heldout_key(d)))
                     for d, (ds, _) in heldout_sets(ws.data, meta).items() if d in CHECK_DOMAINS}
        self.batch_size = batch_size
        init = load_backbone(ws.init)
        self.init_tokens = {d: fidelity.tokens(init, ds, batch_size) for d, (ds, _) in self.held.items()}
        self.agreement = agreement.TeacherAgreement(ws.teacher_task, ws.data, agreement.DOMAIN, batch_size)

    def of(self, folder: Path) -> dict[str, float]:
        """What the distill stage reports of a backbone (``distill.backbone_report``) and the teacher agreement."""
        report = backbone_report(load_backbone(folder / "stage1"), self.held, self.batch_size, "cpu", self.init_tokens)
        row = {f"{domain}_{COLUMNS.get(name, name)}": value for domain, r in report.items() for name, value in r.items()}
        row["teacher_agreement"] = round(self.agreement.of(folder / "stage2"), 3)
        return row


def summary(table: pd.DataFrame) -> pd.DataFrame:
    """Per k: the soups' Avg mean and sd, their members' (each member once), and whether the soups distilled."""
    singles = table[table["k"] == 1].set_index("run")
    rows = []
    for k, d in table[table["k"] > 1].groupby("k"):
        members = list(dict.fromkeys(m for ms in d["members"] for m in ms.split(";")))
        cka_ok = [row["generic_cka_teacher"] >= singles.loc[row["members"].split(";"), "generic_cka_teacher"].mean()
                  for _, row in d.iterrows()]
        probe_ok = [row["sim_probe"] >= singles.loc[row["members"].split(";"), "sim_probe"].mean() - 0.05
                    for _, row in d.iterrows()]
        rows.append({"k": int(k), "soups": len(d), "Avg mean": round(d["Avg"].mean(), 2),
                     "Avg sd": round(d["Avg"].std(ddof=1), 2) if len(d) > 1 else float("nan"),
                     "members' Avg mean": round(singles.loc[members, "Avg"].mean(), 2),
                     "members' Avg sd": round(singles.loc[members, "Avg"].std(ddof=1), 2),
                     "soups with CKA to the teacher (generic) >= members' mean": f"{sum(cka_ok)} of {len(d)}",
                     "soups with probe R² (sim) >= members' mean - 0.05": f"{sum(probe_ok)} of {len(d)}"})
    return pd.DataFrame(rows)


def plot(table: pd.DataFrame, path: Path) -> None:
    """Target Avg of each single seed (k = 1) and of each soup, by soup size, with the members' mean."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    fig, ax = plt.subplots(figsize=(5.5, 3.4), dpi=110)
    ks = sorted(table["k"].unique())
    for i, k in enumerate(ks):
        d = table[table["k"] == k]
        ax.scatter(np.full(len(d), i) + np.linspace(-0.12, 0.12, len(d)), d["Avg"], s=22)
        ax.annotate(f"sd {d['Avg'].std(ddof=1):.2f}" if len(d) > 1 else "", (i, d["Avg"].max() + 0.4),
                    ha="center", fontsize=8)
    ax.axhline(table.loc[table["k"] == 1, "Avg"].mean(), color="grey", lw=0.8, ls="--", label="single seeds' mean")
    ax.set_xticks(range(len(ks)), ["single seed" if k == 1 else f"soup of {k}" for k in ks])
    ax.set_ylabel("target Avg (reported, never used to choose)")
    ax.legend(fontsize=8)
    io.save_figure(path, fig)
    plt.close(fig)


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--workspace", type=Path, required=True, help="the DAG workspace the members were trained in")
    p.add_argument("--benchmark", default="synthetic")
    p.add_argument("--teacher", default="dinov2_s14")
    p.add_argument("--student", default="vit_t6")
    p.add_argument("--members", nargs="+", type=Path, required=True, help="DAG method folders, in soup order")
    p.add_argument("--k", type=int, nargs="+", default=[3], help="soup sizes (disjoint groups of consecutive members)")
    p.add_argument("--work", type=Path, required=True, help="where the soups' stage1/, stage2/ and metrics.json go")
    p.add_argument("--out", type=Path, default=Path("results/stage1_soup.csv"))
    p.add_argument("--plot", type=Path, default=None, help="target Avg of the single seeds and the soups, by k")
    args = p.parse_args(argv)
    members = [f for _, f in recipe_runs([f"member={m}" for m in args.members], "stage1/backbone.safetensors")]
    for m in members:
        if not metrics_file(m).is_file():
            raise SystemExit(f"--members: {str(m)!r} has no metrics file ({metrics_file(m)})")
    if bad := [k for k in args.k if not 2 <= k <= len(members)]:
        raise SystemExit(f"--k: {bad} out of range; a soup has 2 to {len(members)} members (the members given)")
    ws = Workspace(args.workspace, args.benchmark, args.teacher, args.student)
    soups = []
    for k in args.k:
        for g in range(len(members) // k):
            group = members[g * k:(g + 1) * k]
            folder = args.work / f"k{k}-{g}"
            if not (folder / "gkd" / "stage1" / "backbone.json").is_file():
                cook(group, folder / "gkd")
            ws.adapt_and_evaluate(folder)
            folder = folder / "gkd"  # the method folder the DAG's stages wrote into
            soups.append((k, folder, group))
    torch.manual_seed(0)
    checks = Checks(ws)
    rows = []
    for k, folder, group in [(1, m, [m]) for m in dict.fromkeys(members)] + soups:
        row = {"k": k, "run": str(folder), "members": ";".join(str(m) for m in group),
               "Avg": json.loads(metrics_file(folder).read_text())["avg"], **checks.of(folder)}
        rows.append(row)
        print(row, flush=True)
    table = pd.DataFrame(rows)
    io.write_text(args.out, table.to_csv(index=False))
    result = summary(table)
    io.write_text(args.out.with_name(args.out.stem + "_summary.csv"), result.to_csv(index=False))
    print(result.to_string(index=False))
    if args.plot is not None:
        plot(table, args.plot)


if __name__ == "__main__":
    main()
