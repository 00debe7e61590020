"""Overlay pictures: an image with prediction and ground-truth contours (matplotlib, Agg).

Ground truth is drawn solid, the prediction dashed, one colour per foreground class. Volumes
are shown by the slice (along the first axis) with the most foreground.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np
from PIL import Image

from ..data.geometry import geometry_of, write_nifti

# Bright colours that stand out on both red fundus and gray X-ray/CT images.
COLORS = ["#00e5ff", "#ffea00", "#76ff03", "#ff40ff", "#ff9100", "#2979ff", "#ffffff", "#ff1744"]
BINARY = {"truth": "#00ff66", "prediction": "#ffee00"}  # one foreground class: colour tells truth from prediction


def pick_slice(*masks: np.ndarray | None) -> int:
    """Index along axis 0 with the most foreground over the given (D, H, W) masks."""
    area = sum((m > 0).reshape(m.shape[0], -1).sum(1) for m in masks if m is not None)
    return int(np.argmax(area)) if np.ndim(area) else 0


def to_display(image: np.ndarray) -> np.ndarray:
    """(C, H, W) in [0, 1] -> (H, W) gray or (H, W, 3) RGB for imshow."""
    image = np.clip(np.asarray(image, dtype=np.float32), 0, 1)
    return image[0] if image.shape[0] == 1 else np.moveaxis(image[:3], 0, -1)


def save_overlay(image: np.ndarray, pred: np.ndarray | None, target: np.ndarray | None, path: str | Path,
                 class_names: Sequence[str] | None = None, title: str = "", max_side: float = 8.0) -> Path:
    """image (C, *S), pred/target (*S) class maps (either may be None) -> PNG at ``path``
    (``max_side`` inches at 100 dpi on the longer side: 800 pixels by default)."""
    import matplotlib  # deferred: heavy optional dependency, loaded only when used

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # deferred: heavy optional dependency, loaded only when used

    h, w = image.shape[-2:]
    scale = max_side / max(h, w)
    fig, ax = plt.subplots(figsize=(max(w * scale, 2), max(h * scale, 2)), dpi=100)
    draw_overlay(ax, image, pred, target, class_names, legend=True, fontsize=1.6 * max_side)
    if title:
        ax.set_title(title, fontsize=2.0 * max_side)
    fig.tight_layout(pad=0.2)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
    return path


def draw_overlay(ax, image: np.ndarray, pred: np.ndarray | None, target: np.ndarray | None,
                 class_names: Sequence[str] | None = None, legend: bool = True, fontsize: float = 10) -> None:
    """Draw image (C, *S) with truth (solid) and prediction (dashed) contours into ``ax``."""
    from matplotlib.lines import Line2D  # deferred: heavy optional dependency, loaded only when used

    if image.ndim == 4:  # volume: one informative slice
        z = pick_slice(pred, target)
        image = image[:, z]
        pred = None if pred is None else pred[z]
        target = None if target is None else target[z]
    disp = to_display(image)
    ax.imshow(disp, cmap="gray" if disp.ndim == 2 else None, vmin=0, vmax=1, interpolation="nearest")
    classes = sorted({int(c) for m in (pred, target) if m is not None for c in np.unique(m)} - {0})
    binary = len(class_names or ()) == 2 or classes == [1]
    handles = []
    for c in classes:
        color = COLORS[(c - 1) % len(COLORS)]
        name = class_names[c] if class_names and c < len(class_names) else f"class {c}"
        for mask, style, kind in ((target, "solid", "truth"), (pred, "dashed", "prediction")):
            if mask is not None and (mask == c).any() and min(mask.shape) > 1:
                ax.contour((mask == c).astype(float), levels=[0.5], colors=[BINARY[kind] if binary else color], linestyles=style, linewidths=1.5)
        if not binary:
            handles.append(Line2D([], [], color=color, label=name))
    if classes and legend:
        if binary:
            handles = [Line2D([], [], color=BINARY[k], ls=ls, label=f"{k} ({class_names[1] if class_names else 'foreground'})") for k, ls in (("truth", "solid"), ("prediction", "dashed"))]
        else:
            handles += [Line2D([], [], color="gray", ls="solid", label="truth"), Line2D([], [], color="gray", ls="dashed", label="prediction")]
        ax.legend(handles=handles, loc="lower right", fontsize=fontsize, framealpha=0.7)
    ax.set_axis_off()


def save_comparison(rows: Sequence[tuple[str, np.ndarray, np.ndarray | None, dict[str, np.ndarray]]], path: str | Path,
                    class_names: Sequence[str] | None = None, panel_inches: float = 3.6) -> Path:
    """The same images across methods: one row per image, one column per method (titled), truth
    solid and each method's prediction dashed. ``rows``: (row title, image (C, *S), truth,
    {method: prediction})."""
    import matplotlib  # deferred: heavy optional dependency, loaded only when used

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # deferred: heavy optional dependency, loaded only when used
    from matplotlib.lines import Line2D  # deferred: heavy optional dependency, loaded only when used

    methods = list(dict.fromkeys(m for _, _, _, preds in rows for m in preds))
    h, w = rows[0][1].shape[-2:]
    aspect = h / w
    fig, axes = plt.subplots(len(rows), len(methods), figsize=(panel_inches * len(methods), panel_inches * aspect * len(rows) + 0.6),
                             dpi=100, squeeze=False)
    for r, (label, image, truth, preds) in enumerate(rows):
        for c, m in enumerate(methods):
            ax = axes[r][c]
            draw_overlay(ax, image, preds.get(m), truth, class_names, legend=False)
            if r == 0:
                ax.set_title(m, fontsize=13, fontweight="bold")
            if c == 0:
                ax.text(-0.03, 0.5, label, transform=ax.transAxes, rotation=90, ha="right", va="center", fontsize=10)
    binary = len(class_names or ()) == 2
    if binary:
        handles = [Line2D([], [], color=BINARY[k], ls=ls, lw=2, label=k) for k, ls in (("truth", "solid"), ("prediction", "dashed"))]
    else:
        handles = [Line2D([], [], color=COLORS[(c - 1) % len(COLORS)], lw=2, label=n) for c, n in enumerate(class_names or [], start=0) if c > 0]
        handles += [Line2D([], [], color="gray", ls="solid", label="truth"), Line2D([], [], color="gray", ls="dashed", label="prediction")]
    fig.legend(handles=handles, loc="lower center", ncol=len(handles), fontsize=11, frameon=False)
    fig.tight_layout(rect=(0.02, 0.05, 1, 1), pad=0.3)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
    return path


def save_mask(mask: np.ndarray, path: str | Path, num_classes: int, spacing: Sequence[float] | None = None, geometry=None) -> Path:
    """Class map -> file: 2D PNG (binary tasks as 0/255, else class indices), 3D NIfTI. With the
    source volume's ``geometry`` (data.geometry.Geometry) the NIfTI has the source's voxel order
    and affine and overlays it in any viewer; without (.npy sources), a diagonal affine of
    ``spacing``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if mask.ndim == 3:
        if geometry is None:
            zooms = tuple(spacing[::-1]) if spacing else (1.0, 1.0, 1.0)
            geometry = geometry_of(np.diag(list(zooms) + [1.0]), mask.shape[::-1])
        return write_nifti(mask, geometry, path)

    arr = (mask > 0).astype(np.uint8) * 255 if num_classes == 2 else mask.astype(np.uint8)
    Image.fromarray(arr).save(path)
    return path
