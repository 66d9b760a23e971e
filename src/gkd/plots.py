"""Figures of the report: the table as heatmap + grouped bars, a radar chart like the paper's Fig. 2,
and a qualitative grid (image / ground truth / predictions of several methods, one row per domain)."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from gkd import io


def _plt():
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    return plt


def series_style(plt, i: int) -> dict:
    """Colour and marker of the i-th method of a figure: tab10 has ten colours, past them the marker differs."""
    return dict(color=plt.get_cmap("tab10")(i % 10), marker="os^DvP"[i // 10 % 6])


def table_figure(df: pd.DataFrame, path: Path, title: str) -> None:
    """Heatmap of the table next to bars grouped by domain (one colour per method)."""
    import seaborn as sns
    plt = _plt()
    cols = [c for c in df.columns if c not in ("Method", "Params (M)")]
    long = df.melt(id_vars="Method", value_vars=cols, var_name="domain", value_name="mIoU")
    sns.set_theme(style="whitegrid", font_scale=0.9)
    fig, (ax_heat, ax_bar) = plt.subplots(1, 2, figsize=(16, 0.5 * len(df) + 3), dpi=110,
                                         gridspec_kw={"width_ratios": [1.2, 1.5]})
    sns.heatmap(df.set_index("Method")[cols], annot=True, fmt=".1f", annot_kws={"size": 8}, cmap="viridis", vmin=0,
                vmax=max(1.0, float(df[cols].to_numpy().max())), ax=ax_heat)
    ax_heat.set(xlabel="", ylabel="", title="mIoU per domain (%)")
    ax_heat.tick_params(axis="x", rotation=35)
    sns.barplot(data=long, x="domain", y="mIoU", hue="Method", ax=ax_bar, palette="tab10")
    ax_bar.set(xlabel="", ylabel="mIoU (%)", title="grouped by domain (targets unseen in training)")
    ax_bar.tick_params(axis="x", rotation=35)
    ax_bar.legend(fontsize=8, ncol=2, loc="upper left", bbox_to_anchor=(1.0, 1.0))
    fig.suptitle(title)
    fig.tight_layout()
    io.save_figure(path, fig)
    plt.close(fig)


def radar(df: pd.DataFrame, axes: list[str], path: Path, title: str) -> None:
    """One polygon per method over the benchmark axes (the paper's Fig. 2 layout)."""
    plt = _plt()
    angles = np.linspace(0, 2 * np.pi, len(axes), endpoint=False).tolist()
    fig = plt.figure(figsize=(6.5, 6.5), dpi=110)
    ax = fig.add_subplot(111, polar=True)
    top = max(1.0, float(df[axes].to_numpy().max()))
    for i, (_, row) in enumerate(df.iterrows()):
        values = [row[a] for a in axes]
        style = dict(series_style(plt, i), linewidth=2.6 if "GKD" in row["Method"] else 1.4,
                     linestyle="--" if row["Method"] == "Teacher" else "-", markersize=4)
        ax.plot(angles + angles[:1], values + values[:1], label=row["Method"], **style)
        ax.fill(angles + angles[:1], values + values[:1], color=style["color"], alpha=0.06)
    ax.set_xticks(angles)
    ax.set_xticklabels(axes)
    ax.set_ylim(0, top * 1.05)
    ax.set_title(title, pad=22)
    ax.legend(loc="upper right", bbox_to_anchor=(1.35, 1.12), fontsize=8)
    fig.tight_layout()
    io.save_figure(path, fig)
    plt.close(fig)


def qualitative(rows: list[tuple[str, np.ndarray, np.ndarray, list[np.ndarray]]], names: list[str],
                palette: np.ndarray, path: Path, title: str, classes: list[str] | None = None) -> None:
    """rows: (domain, image, label, [prediction per model]); columns image | GT | each model."""
    plt = _plt()
    ncol = 2 + len(names)
    fig, axes = plt.subplots(len(rows), ncol, figsize=(1.9 * ncol, 1.9 * len(rows) + 0.6), dpi=110, squeeze=False)

    def colour(label):
        out = np.zeros((*label.shape, 3), np.uint8)
        valid = label < len(palette)
        out[valid] = palette[label[valid]]
        return out

    for r, (domain, image, label, preds) in enumerate(rows):
        pics = [image, colour(label)] + [colour(p) for p in preds]
        for c, pic in enumerate(pics):
            ax = axes[r, c]
            ax.imshow(pic, interpolation="nearest")
            ax.set_xticks([]), ax.set_yticks([])
            if r == 0:
                ax.set_title((["image", "ground truth"] + names)[c], fontsize=9)
            if c == 0:
                ax.set_ylabel(domain, fontsize=9)
    fig.suptitle(title, fontsize=10)
    if classes:
        handles = [plt.Rectangle((0, 0), 1, 1, color=np.array(c) / 255) for c in palette[:len(classes)]]
        fig.legend(handles, classes, loc="lower center", ncol=min(len(classes), 10), fontsize=8, frameon=False)
        fig.tight_layout(rect=(0, 0.03, 1, 1))
    else:
        fig.tight_layout()
    io.save_figure(path, fig)
    plt.close(fig)


def fidelity(df: pd.DataFrame, targets: list[str], path: Path, title: str) -> None:
    """Per method: R² of each stage-1 loss term through its heads (top; below −1 drawn at −1), and the linear
    probe's R² from the backbone alone after stage 1 (bars) and before it (dots) (bottom), per held-out domain."""
    import seaborn as sns
    plt = _plt()
    methods = list(dict.fromkeys(df["Method"]))
    order = [d for d in dict.fromkeys(df["domain"]) if d not in targets] + [t for t in targets if t in set(df["domain"])]
    heads = df[~df["term"].str.startswith("probe_")].assign(r2=lambda x: x["r2"].clip(lower=-1))
    probe = df[df["term"].str.startswith("probe_")]
    sns.set_theme(style="whitegrid", font_scale=0.85)
    fig, axes = plt.subplots(2, len(methods), figsize=(5.5 * len(methods), 7.5), dpi=110, squeeze=False, sharey="row")
    for col, method in enumerate(methods):
        ax = axes[0, col]
        sns.barplot(data=heads[heads["Method"] == method], x="domain", y="r2", hue="term", order=order, ax=ax,
                    palette="Set2")
        ax.axhline(0, color="black", linewidth=0.8)
        ax.set(title=f"{method}: loss terms through the stage-1 heads", xlabel="", ylabel="R² to the teacher",
               ylim=(-1.05, 1))
        ax.tick_params(axis="x", rotation=35)
        ax = axes[1, col]
        rows = probe[probe["Method"] == method]
        if len(rows):
            sns.barplot(data=rows, x="domain", y="r2", hue="term", order=order, ax=ax, palette="Set1", alpha=0.7)
            for k, term in enumerate(sorted(set(rows["term"]), key=list(dict.fromkeys(rows["term"])).index)):
                init = rows[rows["term"] == term].set_index("domain").reindex(order)["r2_init"]
                ax.scatter(np.arange(len(order)) + (k - 0.5) * 0.4, init.to_numpy(), color="black", s=14, zorder=3,
                           label="before stage 1" if k == 0 else None)
        ax.axhline(0, color="black", linewidth=0.8)
        ax.set(title="linear probe from the backbone alone", xlabel="held-out domain (source / generic / unseen)",
               ylabel="probe R²")
        ax.legend(fontsize=7)
        ax.tick_params(axis="x", rotation=35)
    fig.suptitle(title)
    fig.tight_layout()
    io.save_figure(path, fig)
    plt.close(fig)


def seeds(per_seed: dict[str, list[float]], path: Path, title: str) -> None:
    """Mean ± std of each row's Avg over seeds, with the single runs as dots."""
    plt = _plt()
    names = list(per_seed)
    fig, ax = plt.subplots(figsize=(1.2 * len(names) + 3, 4.5), dpi=110)
    for i, name in enumerate(names):
        values = np.array(per_seed[name])
        ax.bar(i, values.mean(), yerr=values.std(ddof=1) if len(values) > 1 else 0, capsize=4,
               color="tab:red" if "GKD" in name else ("tab:gray" if name == "Teacher" else "tab:blue"), alpha=0.7)
        ax.scatter(np.full(len(values), i), values, color="black", s=12, zorder=3)
    ax.set_xticks(range(len(names)))
    ax.set_xticklabels(names, rotation=30, ha="right")
    ax.set_ylabel("Avg mIoU over unseen domains (%)")
    ax.set_title(title, fontsize=10)
    fig.tight_layout()
    io.save_figure(path, fig)
    plt.close(fig)


def stage1_check(df: pd.DataFrame, checks, path: Path, title: str) -> None:
    """Target Avg of every stage-1 run against each label-free check (one panel each), Spearman's ρ per panel."""
    plt = _plt()
    fig, axes = plt.subplots(1, len(checks), figsize=(4.6 * len(checks), 4.2), dpi=110, squeeze=False)
    methods = list(dict.fromkeys(df["Method"]))
    for ax, (key, label) in zip(axes[0], checks):
        for i, method in enumerate(methods):
            rows = df[df["Method"] == method]
            ax.scatter(rows[key], rows["Avg"], label=method, s=30, **series_style(plt, i))
        valid = df[[key, "Avg"]].dropna()
        rho = valid[key].rank().corr(valid["Avg"].rank()) if len(valid) > 2 else float("nan")  # Spearman
        ax.set_xlabel(label, fontsize=9)
        ax.set_title(f"Spearman ρ = {rho:.2f} over {len(valid)} runs", fontsize=9)
    axes[0][0].set_ylabel("Avg mIoU over unseen domains (%)")
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    # beside the panels, not on one: a screen's runs fill every corner of the first panel
    fig.legend(*axes[0][0].get_legend_handles_labels(), loc="center left", bbox_to_anchor=(1.0, 0.5), fontsize=8)
    io.save_figure(path, fig)
    plt.close(fig)


def budget_curve(df: pd.DataFrame, path: Path, title: str) -> None:
    """Avg and source-val mIoU of every method against the budget multiplier (and stage-1 R² on sim)."""
    plt = _plt()
    source = next(c for c in df.columns if c.endswith("(source val)"))
    r2 = [c for c in df.columns if c.startswith("R² ") and c.endswith("(sim)")]
    panels = [("Avg", "Avg mIoU over unseen domains (%)"), (source, f"{source} mIoU (%)")]
    fig, axes = plt.subplots(1, len(panels) + bool(r2), figsize=(5.2 * (len(panels) + bool(r2)), 4.3), dpi=110)
    for i, method in enumerate(dict.fromkeys(df["Method"])):
        rows = df[df["Method"] == method]
        style = dict(series_style(plt, i), linewidth=2.4 if "GKD" in method else 1.3, label=method)
        for ax, (col, label) in zip(axes, panels):
            ax.plot(rows["budget"], rows[col], **style)
            ax.set(xscale="log", xlabel="budget (x default epochs)", ylabel=label)
        if r2 and rows[r2].notna().all(axis=None):
            axes[-1].plot(rows["budget"], rows[r2].mean(axis=1), **style)
            axes[-1].set(xscale="log", xlabel="budget (x default epochs)",
                         ylabel="stage-1 R² on held-out source (mean of terms)")
    for ax in axes:
        budgets = sorted(df["budget"].unique())
        ax.set_xticks(budgets)
        ax.set_xticklabels([f"{b}x" for b in budgets])
        ax.minorticks_off()
    axes[0].legend(fontsize=7, loc="best")
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    io.save_figure(path, fig)
    plt.close(fig)
