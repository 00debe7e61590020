"""Per-image segmentation metrics (docs/method.md) and a MONAI-style accumulator.

All functions take ONE image: ``pred`` and ``target`` are integer class maps (*S) (numpy or
torch), ``num_classes`` includes the background (class 0). Scores are reported for the
foreground classes 1..C-1 only.

Conventions (documented because papers differ):
- Dice / IoU when both prediction and ground truth are empty for a class: 1.0 (nothing to
  find, nothing found). Empty truth with a non-empty prediction scores 0.0.
- HD95 is NaN when either mask of a class is empty (the distance is undefined); summaries
  average over the images where it is defined and report how many were.
- HD95 is in pixels, or in mm when ``spacing`` (mm per pixel/voxel, spatial order) is given.
- Vessel tasks (``extra["task"] == "vessel"``) add AUC of the foreground probability and
  pixel accuracy, both computed inside the field-of-view mask only.
"""

from __future__ import annotations

import math
import warnings
from typing import Any, Sequence

import numpy as np
import torch


def _np(x: Any) -> np.ndarray:
    return x.detach().cpu().numpy() if isinstance(x, torch.Tensor) else np.asarray(x)


def dice_per_class(pred: Any, target: Any, num_classes: int) -> np.ndarray:
    """(C-1,) Dice 2|P&T| / (|P|+|T|) per foreground class; empty-vs-empty = 1.0."""
    p, t = _np(pred).ravel(), _np(target).ravel()
    out = np.empty(num_classes - 1)
    for c in range(1, num_classes):
        pc, tc = p == c, t == c
        denom = pc.sum() + tc.sum()
        out[c - 1] = 1.0 if denom == 0 else 2.0 * np.logical_and(pc, tc).sum() / denom
    return out


def iou_per_class(pred: Any, target: Any, num_classes: int) -> np.ndarray:
    """(C-1,) IoU |P&T| / |P|T| per foreground class; empty-vs-empty = 1.0."""
    p, t = _np(pred).ravel(), _np(target).ravel()
    out = np.empty(num_classes - 1)
    for c in range(1, num_classes):
        pc, tc = p == c, t == c
        union = np.logical_or(pc, tc).sum()
        out[c - 1] = 1.0 if union == 0 else np.logical_and(pc, tc).sum() / union
    return out


def hd95_per_class(pred: Any, target: Any, num_classes: int, spacing: Sequence[float] | None = None) -> np.ndarray:
    """(C-1,) symmetric 95th-percentile Hausdorff distance (MONAI); NaN where a mask is empty."""
    from monai.metrics import compute_hausdorff_distance  # deferred: heavy optional dependency, loaded only when used

    p, t = _np(pred).astype(np.int64), _np(target).astype(np.int64)
    out = np.full(num_classes - 1, np.nan)
    for c in range(1, num_classes):
        pc, tc = p == c, t == c
        if not pc.any() or not tc.any():
            continue
        y_pred = torch.from_numpy(pc)[None, None]
        y = torch.from_numpy(tc)[None, None]
        with warnings.catch_warnings():  # MONAI 1.5+ deprecation chatter from inside its own code
            warnings.simplefilter("ignore", FutureWarning)
            d = compute_hausdorff_distance(y_pred, y, include_background=True, percentile=95, spacing=list(spacing) if spacing else None)
        out[c - 1] = float(d.reshape(-1)[0])
    return out


def vessel_scores(prob_fg: Any, target: Any, fov: Any | None = None, threshold: float = 0.5) -> tuple[float, float]:
    """(AUC, accuracy) inside the FOV: ``prob_fg`` (*S) foreground probability, ``target`` (*S)
    binary. AUC is NaN when the FOV holds only one class."""
    from sklearn.metrics import roc_auc_score  # deferred: heavy optional dependency, loaded only when used

    prob, t = _np(prob_fg).astype(np.float64), _np(target) > 0
    inside = np.ones_like(t, dtype=bool) if fov is None else _np(fov).astype(bool)
    prob, t = prob[inside], t[inside]
    if t.size == 0:
        return math.nan, math.nan
    acc = float(((prob >= threshold) == t).mean())
    auc = float(roc_auc_score(t, prob)) if 0 < t.sum() < t.size else math.nan
    return auc, acc


class SegmentationMetrics:
    """Accumulates per-image metrics; ``summary()`` gives mean/std per class.

    >>> m = SegmentationMetrics(num_classes=2, class_names=["background", "lesion"])
    >>> m.update(pred, target, id="img1")          # one image, (*S) class maps
    >>> m.rows(), m.summary()
    """

    def __init__(self, num_classes: int, class_names: Sequence[str] | None = None, vessel: bool = False, hd95: bool = True):
        if num_classes < 2:
            raise ValueError(f"num_classes must be >= 2 (background + foreground), got {num_classes}")
        self.num_classes = num_classes
        names = list(class_names) if class_names else ["background"] + [f"class{c}" for c in range(1, num_classes)]
        if len(names) != num_classes:
            raise ValueError(f"{len(names)} class names for {num_classes} classes")
        self.class_names = names
        self.vessel = vessel
        self.hd95 = hd95
        self._rows: list[dict[str, Any]] = []

    def reset(self) -> None:
        self._rows = []

    def update(self, pred: Any, target: Any, probs: Any | None = None, fov: Any | None = None,
               spacing: Sequence[float] | None = None, id: str | None = None) -> dict[str, Any]:
        """One image: pred/target (*S) class maps; probs (C, *S) softmax (needed for vessel AUC)."""
        if tuple(np.shape(pred)) != tuple(np.shape(target)):
            raise ValueError(f"prediction {tuple(np.shape(pred))} and target {tuple(np.shape(target))} differ in size")
        row: dict[str, Any] = {"id": id if id is not None else str(len(self._rows))}
        dice = dice_per_class(pred, target, self.num_classes)
        iou = iou_per_class(pred, target, self.num_classes)
        hd = hd95_per_class(pred, target, self.num_classes, spacing) if self.hd95 else np.full(self.num_classes - 1, np.nan)
        for c, name in enumerate(self.class_names[1:]):
            row[f"dice_{name}"], row[f"iou_{name}"], row[f"hd95_{name}"] = float(dice[c]), float(iou[c]), float(hd[c])
        row["dice_mean"] = float(dice.mean())
        if self.vessel:
            if probs is None:
                raise ValueError("vessel metrics need the class probabilities")
            fg = _np(probs)[1:].sum(axis=0)
            row["auc"], row["accuracy"] = vessel_scores(fg, _np(target) > 0, fov)
        self._rows.append(row)
        return row

    def update_batch(self, preds: Any, targets: Any, probs: Any | None = None, fovs: Any | None = None, ids: Sequence[str] | None = None) -> None:
        """A batch: preds/targets (B, *S), probs (B, C, *S), fovs (B, *S)."""
        for b in range(len(preds)):
            self.update(preds[b], targets[b], None if probs is None else probs[b], None if fovs is None else fovs[b], id=None if ids is None else ids[b])

    def rows(self) -> list[dict[str, Any]]:
        return list(self._rows)

    def metric_names(self) -> list[str]:
        return [k for k in (self._rows[0] if self._rows else {}) if k != "id"]

    def summary(self) -> dict[str, dict[str, float]]:
        """metric -> {mean, std, n}: NaN entries (undefined HD95/AUC) are left out of mean/std."""
        out: dict[str, dict[str, float]] = {}
        for k in self.metric_names():
            vals = np.array([r[k] for r in self._rows], dtype=np.float64)
            ok = vals[np.isfinite(vals)]
            out[k] = {
                "mean": float(ok.mean()) if ok.size else math.nan,
                "std": float(ok.std()) if ok.size else math.nan,
                "n": int(ok.size),
            }
        return out

    def mean_foreground_dice(self) -> float:
        return float(np.mean([r["dice_mean"] for r in self._rows])) if self._rows else math.nan
