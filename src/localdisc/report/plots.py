"""Curves for benchmarks: test Dice against the number of labeled images (matplotlib, Agg)."""

from __future__ import annotations

import math
import zlib
from pathlib import Path
from typing import Sequence

COLORS = ["#000000", "#e41a1c", "#377eb8", "#4daf4a", "#984ea3", "#ff7f00", "#a65628", "#f781bf", "#999999", "#17becf"]
# one colour per method name in every report, whichever methods a benchmark has
METHOD_COLORS = {"random": "#000000", "ld": "#e41a1c", "ld-full-finetune": "#ff7f00", "simclr": "#377eb8", "densecl": "#4daf4a",
                 "genesis": "#984ea3", "cluster-contrast": "#a65628", "ld+pdcr+uafs": "#f781bf", "random+pdcr+uafs": "#999999",
                 "ld-guarded": "#17becf"}  # every report adds ld-guarded beside the methods: it must not share their colours


def method_color(name: str) -> str:
    if name in METHOD_COLORS:
        return METHOD_COLORS[name]

    return COLORS[1 + zlib.crc32(name.encode()) % (len(COLORS) - 1)]


def dice_vs_labels(curves: dict[str, dict[str, Sequence[tuple[float, float, float]]]], path: str | Path,
                   title: str = "", ylabel: str = "Dice") -> Path:
    """One panel per entry of ``curves`` (a class, or the mean over classes); in each, one line per
    method through (labels, mean) with a band of +- ``half`` (the caller's 95% CI half-width).
    ``curves[panel][method] = [(x, mean, half)]``. Colours follow :func:`method_color` (random
    init black and dashed); panels share one y-range and wrap onto rows of two, so fonts stay
    readable at page width. x is log-scaled when the budgets span more than a factor of 4."""
    import matplotlib  # deferred: heavy optional dependency, loaded only when used

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # deferred: heavy optional dependency, loaded only when used

    panels = list(curves)
    n = max(1, len(panels))
    longest = max((len(m) for c in curves.values() for m in c), default=6)
    legend_in = 0.6 + 0.085 * longest  # room for the longest method name at fontsize 10
    cols = min(n, 2)
    rows = -(-n // cols)
    width = 4.6 * cols + legend_in
    right = 1 - legend_in / width
    fig, grid = plt.subplots(rows, cols, figsize=(width, 3.9 * rows + 0.4), squeeze=False, dpi=150, sharey=True)
    axes = [[ax for row in grid for ax in row]]
    for ax in axes[0][n:]:
        ax.set_visible(False)
    xs_all = sorted({p[0] for c in curves.values() for pts in c.values() for p in pts if p[0] > 0})
    for ax, panel in zip(axes[0], panels):
        for i, (method, pts) in enumerate(curves[panel].items()):
            pts = sorted((x, m, s) for x, m, s in pts if math.isfinite(m))
            if not pts:
                continue
            x = [p[0] for p in pts]
            m = [p[1] for p in pts]
            s = [p[2] if math.isfinite(p[2]) else 0.0 for p in pts]
            color = method_color(method)
            ls = "--" if method == "random" else "-"
            ax.plot(x, m, ls, marker="o", ms=4, color=color, label=method, lw=1.8)
            ax.fill_between(x, [a - b for a, b in zip(m, s)], [a + b for a, b in zip(m, s)], color=color, alpha=0.15, lw=0)
        if xs_all and xs_all[-1] > 4 * xs_all[0]:
            ax.set_xscale("log")
        if xs_all:
            ax.set_xticks(xs_all)
            ax.set_xticklabels([f"{x:g}" for x in xs_all], fontsize=9)
            ax.minorticks_off()
        ax.set_title(panel, fontsize=11)
        ax.set_xlabel("labeled training images", fontsize=10)
        ax.grid(alpha=0.3)
        ax.tick_params(labelsize=9)
    for row in grid:
        row[0].set_ylabel(ylabel, fontsize=10)
    lo, hi = axes[0][0].get_ylim()  # shared by every panel (sharey)
    axes[0][0].set_ylim(bottom=max(0.0, lo), top=min(1.0, hi + 0.02))
    handles, labels = axes[0][0].get_legend_handles_labels()
    if handles:
        fig.legend(handles, labels, loc="center left", bbox_to_anchor=(right, 0.5), fontsize=10, frameon=False)
    if title:
        fig.suptitle(title, fontsize=12)
    fig.tight_layout(rect=(0, 0, right, 1))
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
    return path


__all__ = ["dice_vs_labels", "method_color", "METHOD_COLORS"]
