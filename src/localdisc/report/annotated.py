"""Pictures that explain themselves: cluster maps with a legend naming the structures, and
landmark predictions with their names beside the annotated support image."""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np

MAX_INCHES = 8.0  # a panel's longer side (at 100 dpi: 800 px), whatever the image's own size


def _figure(panels: int, h: int, w: int):
    import matplotlib  # deferred: heavy optional dependency, loaded only when used

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # deferred: heavy optional dependency, loaded only when used

    scale = MAX_INCHES / max(h, w)
    fig, axes = plt.subplots(1, panels, figsize=(max(w * scale, 3) * panels, max(h * scale, 3) + 0.6), dpi=100, squeeze=False)
    return plt, fig, axes[0]


def _rgb(image: np.ndarray) -> np.ndarray:
    """(C, H, W) in [0, 1] -> (H, W, 3) float."""
    img = image if image.shape[0] == 3 else np.repeat(image[:1], 3, axis=0)
    return np.clip(np.moveaxis(img, 0, -1), 0, 1)


def save_cluster_legend_figure(image: np.ndarray, clusters: np.ndarray, colors: np.ndarray, names: dict[int, str], path: Path,
                               title: str = "", alpha: float = 0.5) -> Path:
    """image (C, H, W), clusters (H, W) ints, colors (K, 3) uint8, names {cluster: label} (e.g.
    the matched structure, else "cluster k") -> PNG: the image and the blended cluster map, with
    a legend of every cluster that occurs."""
    from matplotlib.patches import Patch  # deferred: heavy optional dependency, loaded only when used

    h, w = clusters.shape
    plt, fig, (a, b) = _figure(2, h, w)
    rgb = _rgb(image)
    a.imshow(rgb)
    a.set_title("image")
    b.imshow((1 - alpha) * rgb + alpha * colors[clusters] / 255.0)
    b.set_title("clusters")
    for ax in (a, b):
        ax.axis("off")
    present = [int(k) for k in np.unique(clusters)]
    handles = [Patch(color=colors[k] / 255.0, label=names.get(k, f"cluster {k}")) for k in present]
    fig.legend(handles=handles, loc="lower center", ncol=min(6, len(handles)), fontsize=11, frameon=False)
    if title:
        fig.suptitle(title, fontsize=12)
    fig.tight_layout(rect=(0, 0.08, 1, 0.95))
    fig.savefig(path)
    plt.close(fig)
    return Path(path)


def save_landmark_figure(support: np.ndarray, support_points: dict[str, Sequence[float]], query: np.ndarray,
                         predicted: dict[str, Sequence[float]], truth: dict[str, Sequence[float]] | None, path: Path, title: str = "") -> Path:
    """The annotated support (left) beside the query (right): every landmark named; predictions
    as red crosses, the truth (when known) as green circles joined to the prediction."""
    h, w = query.shape[-2:]
    plt, fig, (a, b) = _figure(2, max(h, support.shape[-2]), max(w, support.shape[-1]))
    a.imshow(_rgb(support))
    a.set_title("support (annotated)")
    b.imshow(_rgb(query))
    b.set_title("query: predicted" + (" (red) and true (green)" if truth else ""))
    size = max(h, w)
    for name, (y, x) in support_points.items():
        a.plot(x, y, "o", color="yellow", ms=7, mec="black")
        a.annotate(name, (x, y), xytext=(6, 6), textcoords="offset points", color="yellow", fontsize=10, weight="bold")
    for name, (y, x) in predicted.items():
        b.plot(x, y, "x", color="red", ms=9, mew=2.5)
        b.annotate(name, (x, y), xytext=(6, 6), textcoords="offset points", color="red", fontsize=10, weight="bold")
        if truth and name in truth:
            ty, tx = truth[name][:2]
            b.plot(tx, ty, "o", mfc="none", mec="lime", ms=10, mew=2)
            b.plot([x, tx], [y, ty], "-", color="lime", lw=1)
    for ax in (a, b):
        ax.axis("off")
    if title:
        fig.suptitle(title + f" ({size} px)", fontsize=12)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return Path(path)


__all__ = ["save_cluster_legend_figure", "save_landmark_figure"]
