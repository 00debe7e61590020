"""Curves for benchmarks: test Dice against the number of labeled images (matplotlib, Agg)."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Sequence

COLORS = ["#000000", "#e41a1c", "#377eb8", "#4daf4a", "#984ea3", "#ff7f00", "#a65628", "#f781bf", "#999999", "#17becf"]


def dice_vs_labels(curves: dict[str, dict[str, Sequence[tuple[float, float, float]]]], path: str | Path,
                   title: str = "", ylabel: str = "Dice") -> Path:
    """One panel per entry of ``curves`` (a class, or the mean over classes); in each, one line per
    method through (labels, mean) with a +- std band. ``curves[panel][method] = [(x, mean, std)]``.
    The first method (random init, the reference) is drawn black and dashed. x is log-scaled
    when the budgets span more than a factor of 4."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = list(curves)
    n = max(1, len(panels))
    width = 4.2 * n + 1.6
    right = 1 - 1.5 / width  # room for the legend
    fig, axes = plt.subplots(1, n, figsize=(width, 3.6), squeeze=False, dpi=110)
    xs_all = sorted({p[0] for c in curves.values() for pts in c.values() for p in pts if p[0] > 0})
    for ax, panel in zip(axes[0], panels):
        for i, (method, pts) in enumerate(curves[panel].items()):
            pts = sorted((x, m, s) for x, m, s in pts if math.isfinite(m))
            if not pts:
                continue
            x = [p[0] for p in pts]
            m = [p[1] for p in pts]
            s = [p[2] if math.isfinite(p[2]) else 0.0 for p in pts]
            color = COLORS[i % len(COLORS)]
            ls = "--" if i == 0 else "-"
            ax.plot(x, m, ls, marker="o", ms=3.5, color=color, label=method, lw=1.5)
            ax.fill_between(x, [a - b for a, b in zip(m, s)], [a + b for a, b in zip(m, s)], color=color, alpha=0.12, lw=0)
        if xs_all and xs_all[-1] > 4 * xs_all[0]:
            ax.set_xscale("log")
        if xs_all:
            ax.set_xticks(xs_all)
            ax.set_xticklabels([f"{x:g}" for x in xs_all], fontsize=7)
            ax.minorticks_off()
        ax.set_title(panel, fontsize=9)
        ax.set_xlabel("labeled training images", fontsize=8)
        ax.set_ylabel(ylabel, fontsize=8)
        ax.set_ylim(bottom=max(0.0, ax.get_ylim()[0]), top=min(1.0, ax.get_ylim()[1] + 0.02))
        ax.grid(alpha=0.3)
        ax.tick_params(labelsize=7)
    handles, labels = axes[0][0].get_legend_handles_labels()
    if handles:
        fig.legend(handles, labels, loc="center left", bbox_to_anchor=(right, 0.5), fontsize=7, frameon=False)
    if title:
        fig.suptitle(title, fontsize=10)
    fig.tight_layout(rect=(0, 0, right, 1))
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
    return path


__all__ = ["dice_vs_labels"]
