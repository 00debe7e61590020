"""Scores of shape-guided discovery against the classical baselines (tasks/baselines.py).

- vessels: :func:`score_vessel_rules` scores each prediction rule of an ld-shape run (cluster
  channel 0: a_0 > 0.5 "threshold", argmax_k a_k = 0, the prototype rule) and the Otsu and
  Frangi baselines inside the field of view: Dice, IoU, accuracy and AUC, means over images.
  The AUC of the binary argmax map would be meaningless: a_0 scores it. :func:`retina_panels`
  does the same on the unlabeled photograph ``skimage.data.retina()`` (no scores, pictures).
- lungs: :func:`score_lungs` scores the guided structure of an ld-shape run against the union
  of the left and right lung outlines, beside a control run's clusters, Otsu (lungs hold air:
  dark) and the whole image, at one evaluation size.
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from ..data.datasets import resize_image, resize_labels
from ..data.records import Sample, load_sample_fov, load_sample_image, load_sample_mask
from .baselines import otsu_dark, vessel_baselines, whole_image
from .discover import RunModel, binary_scores, predict_maps

RULES = ("threshold", "argmax", "prototype")
LUNG_RULES = ("argmax", "threshold", "prototype")  # the lung table's row order
LUNG_NAMES = ("Left Lung", "Right Lung")


def score_vessel_rules(model: RunModel, samples: Sequence[Sample], baselines: bool = True) -> dict[str, dict[str, float]]:
    """{"ld-shape RULE" (and "otsu", "frangi"): {dice, iou, accuracy, auc}} means over ``samples``,
    inside each image's FOV (the whole image when it has none)."""
    scores: dict[str, list[dict]] = {**{f"ld-shape {r}": [] for r in RULES}, **({"otsu": [], "frangi": []} if baselines else {})}
    for s in samples:
        img = load_sample_image(s, model.channels)
        truth = load_sample_mask(s) > 0
        fov = load_sample_fov(s)
        fov = np.ones_like(truth) if fov is None else fov
        a0 = predict_maps(model, img, "shape", "threshold")
        for rule in RULES:
            prob = a0 if rule == "threshold" else predict_maps(model, img, "shape", rule)
            scores[f"ld-shape {rule}"].append(binary_scores(prob > 0.5, truth, a0 if rule == "argmax" else prob, fov))
        for name, (binary, score) in (vessel_baselines(load_sample_image(s, 3), fov).items() if baselines else ()):
            scores[name].append(binary_scores(binary, truth, score, fov))
    return {m: {k: float(np.mean([r[k] for r in rows if k in r])) for k in ("dice", "iou", "accuracy", "auc")} for m, rows in scores.items()}


def retina_photograph(side: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """``skimage.data.retina()`` as (3, H, W) float in [0, 1] (resized to side x side when
    ``side``), and its field of view (H, W) bool: the bright disc, filled and eroded by 3 px."""
    from scipy import ndimage  # deferred: heavy optional dependency, loaded only when used
    from skimage import data as skdata  # deferred: heavy optional dependency, loaded only when used

    retina = skdata.retina().astype(np.float32).transpose(2, 0, 1) / 255.0
    if side:
        retina = resize_image(torch.from_numpy(retina), (side, side)).numpy()
    fov = ndimage.binary_erosion(ndimage.binary_fill_holes(retina[0] > 0.1), iterations=3)
    return retina, fov


def retina_panels(model: RunModel, rule: str, side: int = 0) -> tuple[np.ndarray, np.ndarray, dict[str, np.ndarray]]:
    """The photograph (3, H, W), its FOV (H, W) and {"ld-shape", "otsu", "frangi"} binary vessel maps inside it."""
    retina, fov = retina_photograph(side)
    prob = predict_maps(model, retina if model.channels == 3 else retina.mean(0, keepdims=True), "shape", rule)
    return retina, fov, {"ld-shape": (prob > 0.5) & fov, **{k: v[0] for k, v in vessel_baselines(retina, fov).items()}}


def lung_union(sample: Sample, size: Sequence[int]) -> np.ndarray:
    """(H, W) bool at ``size`` (nearest neighbour): left or right lung."""
    mask = load_sample_mask(sample)
    names = list(sample.extra.get("class_names") or [])
    labels = [names.index(n) for n in LUNG_NAMES if n in names]
    if not labels:
        raise SystemExit(f"{sample.id}: no {' / '.join(LUNG_NAMES)} labels (class names {names})")
    return resize_labels(torch.from_numpy(np.isin(mask, labels)).float(), tuple(size)).numpy() > 0.5


@torch.no_grad()
def score_lungs(shape: RunModel, control: RunModel, samples: Sequence[Sample], size: Sequence[int], pictures: int = 4) -> dict[str, Any]:
    """Dice against the lung union at ``size``, per image, of: ld-shape with each rule, the
    control's cluster 0, Otsu on the grey image, the whole image; and of each control cluster
    (``control_k`` (images, K)), from which the best one chosen WITH the labels is added as an
    oracle row. Returns {dice: {row: [per image]}, control_k, panels: [(grey, truth, ld-shape
    argmax, Otsu)] of the first ``pictures`` images}."""
    size = tuple(size)
    K = control.method.cfg.num_clusters
    dice: dict[str, list[float]] = {**{f"ld-shape, {r}": [] for r in LUNG_RULES}, "control, cluster 0": [], "otsu": [], "everything": []}
    control_k = np.zeros((len(samples), K))
    panels = []
    for i, s in enumerate(samples):
        truth = lung_union(s, size)
        img = resize_image(torch.from_numpy(load_sample_image(s, 1)).float(), size)
        preds = {}
        x = resize_image(img, shape.size)[None].to(shape.device)
        for r in LUNG_RULES:
            prob = shape.method.structure_probability(x, rule=r)[:, None]
            preds[f"ld-shape, {r}"] = F.interpolate(prob.float().cpu(), size=size, mode="bilinear")[0, 0].numpy() > 0.5
        a = control.method.assign(resize_image(img, control.size)[None].to(control.device)).float().cpu()
        clusters = F.interpolate(a, size=size, mode="bilinear")[0].argmax(0).numpy()
        grey = img[0].numpy()
        preds.update({"control, cluster 0": clusters == 0, "otsu": otsu_dark(grey), "everything": whole_image(truth.shape)})
        for name, pred in preds.items():
            dice[name].append(binary_scores(pred, truth)["dice"])
        control_k[i] = [binary_scores(clusters == k, truth)["dice"] for k in range(K)]
        if i < pictures:
            panels.append((grey, truth, preds["ld-shape, argmax"], preds["otsu"]))
    best = int(control_k.mean(0).argmax())
    dice[f"control, best cluster ({best}) chosen with the labels"] = list(control_k[:, best])
    return {"dice": dice, "control_k": control_k, "panels": panels}
