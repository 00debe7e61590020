"""Structures without labels (docs/method.md): cluster maps and shape-guided discovery.

(a) ``mode="clusters"``: the argmax over K of the LD clustering head is an unsupervised
    segmentation. With labels, clusters are matched to structures once over the dataset
    (Hungarian on Dice, :mod:`localdisc.evaluation.hungarian`) and scored per structure.
(b) ``mode="shape"``: a :class:`~localdisc.methods.ld_shape.ShapeGuidedLD` run; cluster channel 0
    is the discovered structure (a_0 > 0.5; [argmax_k a_k = 0]; or the prototype rule
    softmax_k cos(v_p, r_k) / 0.2, channel 0). With labels, Dice of the foreground inside the FOV.

Predictions are made at the model's size and brought back to each image's original size
(bilinear for probabilities, nearest for labels) before scoring, so Dice is in original pixels.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from ..data.datasets import resize_image
from ..data.records import Sample, load_sample_fov, load_sample_image, load_sample_mask
from ..errors import ConfigError, DataError
from ..evaluation.hungarian import ClusterMatcher, one_hot_structures
from ..methods import load_pretrained_method
from ..report.annotated import save_cluster_legend_figure
from ..runtime.run import read_run_config
from ..utils import pick_device, progress, safe_name


@dataclass
class RunModel:
    method: torch.nn.Module
    size: tuple[int, ...]
    channels: int
    device: torch.device


def load_run_model(run_dir: str | Path, device: str = "cpu") -> RunModel:
    """A finished pretraining run in eval mode plus the image size and channels it was trained on."""

    device = pick_device(str(device))
    cfg = read_run_config(run_dir)
    method = load_pretrained_method(run_dir, device=device)
    size = tuple(int(s) for s in cfg.get("image_size") or ())
    if not size:
        raise ConfigError(f"{run_dir}/config.yaml: no image_size recorded")
    return RunModel(method, size, int(cfg.get("in_channels") or 1), device)


# ---------------------------------------------------------------- pictures
def palette(k: int) -> np.ndarray:
    """(k, 3) uint8 distinct colors (matplotlib tab20, then cycled)."""
    from matplotlib import colormaps  # deferred: heavy optional dependency, loaded only when used

    cols = colormaps["tab20"](np.arange(20))[:, :3]
    return (cols[np.arange(k) % 20] * 255).astype(np.uint8)


def to_rgb(image: np.ndarray) -> np.ndarray:
    """(C, H, W) float in [0, 1] -> (H, W, 3) uint8."""
    img = image if image.shape[0] == 3 else np.repeat(image[:1], 3, axis=0)
    return (np.clip(np.moveaxis(img, 0, -1), 0, 1) * 255).astype(np.uint8)


def _middle_slice(arr: np.ndarray, spatial_dims: int) -> np.ndarray:
    """3D (..., D, H, W) -> its middle axial slice; 2D unchanged."""
    return arr[..., arr.shape[-3] // 2, :, :] if spatial_dims == 3 else arr


def save_cluster_pictures(image: np.ndarray, clusters: np.ndarray, K: int, out_dir: Path, stem: str, alpha: float = 0.5) -> None:
    """``<stem>_clusters.png`` (color map) and ``<stem>_overlay.png``; 3D shows the middle slice."""

    nd = clusters.ndim
    lab = _middle_slice(clusters, nd)
    img = _middle_slice(image, nd)
    colors = palette(K)[lab]
    Image.fromarray(colors).save(out_dir / f"{stem}_clusters.png")
    blend = (1 - alpha) * to_rgb(img).astype(float) + alpha * colors
    Image.fromarray(blend.astype(np.uint8)).save(out_dir / f"{stem}_overlay.png")


def save_mask_overlay(image: np.ndarray, pred: np.ndarray, out_path: Path, truth: np.ndarray | None = None) -> None:
    """Prediction in cyan over the image; with ``truth``: false positives red, true positives yellow, misses green."""

    nd = pred.ndim
    rgb = to_rgb(_middle_slice(image, nd)).astype(float)
    p = _middle_slice(pred, nd).astype(bool)
    t = _middle_slice(truth, nd).astype(bool) if truth is not None else None
    col = np.zeros_like(rgb)
    on = p.copy()
    col[p] = (0, 255, 255) if t is None else (255, 0, 0)  # cyan stands out on red fundus photos
    if t is not None:
        col[p & t] = (255, 255, 0)
        col[~p & t] = (0, 255, 0)
        on |= t
    rgb[on] = 0.4 * rgb[on] + 0.6 * col[on]
    Image.fromarray(rgb.astype(np.uint8)).save(out_path)


# ---------------------------------------------------------------- prediction
@torch.no_grad()
def predict_maps(model: RunModel, image: np.ndarray, mode: str = "clusters", rule: str = "threshold") -> np.ndarray:
    """One image (C, *S_orig) -> cluster map int64 (*S_orig) or structure probability float32 (*S_orig)."""
    x = resize_image(torch.from_numpy(image).float(), model.size)[None].to(model.device)
    if mode == "clusters":
        a = model.method.assign(x)  # (1, K, *size)
        lab = a.argmax(1, keepdim=True).float()
        return F.interpolate(lab, size=image.shape[1:], mode="nearest-exact")[0, 0].long().cpu().numpy()
    if mode == "shape":
        if not hasattr(model.method, "structure_probability"):
            raise ConfigError("--mode shape needs a shape-guided run (pretrain --method ld-shape)")
        prob = model.method.structure_probability(x, rule=rule)[:, None]  # (1, 1, *size)
        mode_i = "bilinear" if prob.dim() == 4 else "trilinear"
        return F.interpolate(prob, size=image.shape[1:], mode=mode_i, align_corners=False)[0, 0].cpu().numpy()
    raise ConfigError(f"unknown discovery mode {mode!r}; valid: clusters, shape")


def _class_names(sample: Sample, mask: np.ndarray) -> list[str]:
    names = sample.extra.get("class_names")
    if names:
        return list(names[1:])
    return [f"class{c}" for c in range(1, max(2, int(mask.max()) + 1))]


def discover(
    model: RunModel,
    samples: Sequence[Sample],
    out_dir: str | Path,
    mode: str = "clusters",
    with_masks: bool = False,
    rule: str = "threshold",
    threshold: float = 0.5,
    max_pictures: int = 16,
    mapping: dict[str, int] | None = None,
    kmeans=None,
) -> dict:
    """Write cluster/structure maps and overlays for ``samples``; with masks, score them
    (clusters: matched to the structures on these images, or by a given ``mapping``).
    Mode "kmeans" is "clusters" with the maps of a fitted ``kmeans`` (:class:`PixelKMeans`)
    instead of the clustering head.

    Returns (and writes to ``out_dir/metrics.json`` when labels were used) the metrics dict.
    """
    out = Path(out_dir)
    (out / "maps").mkdir(parents=True, exist_ok=True)
    (out / "overlays").mkdir(exist_ok=True)
    matcher: ClusterMatcher | None = None
    per_image: list[dict] = []
    if mode == "kmeans" and kmeans is None:
        raise ConfigError("discover: mode kmeans needs a fitted PixelKMeans")
    K = kmeans.num_clusters if mode == "kmeans" else int(getattr(model.method.cfg, "num_clusters", 0) or getattr(model.method.cfg, "K", 0) or 0)
    legend_later: list = []
    for i, s in enumerate(progress(samples, desc=f"discover {mode}")):
        image = load_sample_image(s, model.channels)
        pred = kmeans.predict(image) if mode == "kmeans" else predict_maps(model, image, mode, rule)
        mask = fov = None
        if with_masks:
            mask = load_sample_mask(s)
            if mask is None:
                raise DataError(f"{s.image}: no mask, but labels were requested (--masks-from-data)")
            if mask.shape != image.shape[1:]:
                raise DataError(f"{s.mask or s.image}: mask size {mask.shape} differs from image size {image.shape[1:]}")
            fov = load_sample_fov(s)
        stem = f"{i:04d}_{safe_name(s.id)}"
        if mode in ("clusters", "kmeans"):
            K = max(K, int(pred.max()) + 1)
            np.save(out / "maps" / f"{stem}.npy", pred.astype(np.uint8))
            if i < max_pictures:
                save_cluster_pictures(image, pred, K, out / "overlays", stem)
                legend_later.append((image, pred, stem, s.id))
            if mask is not None:
                names = _class_names(s, mask)
                if matcher is None:
                    matcher = ClusterMatcher(K, names)
                matcher.update(pred, one_hot_structures(mask, range(1, len(names) + 1)), fov)
        else:
            binary = pred > threshold

            img2d = _middle_slice(binary, binary.ndim)
            Image.fromarray((img2d * 255).astype(np.uint8)).save(out / "maps" / f"{stem}.png")
            if i < max_pictures:
                save_mask_overlay(image, binary, out / "overlays" / f"{stem}_overlay.png", (mask > 0) if mask is not None else None)
            if mask is not None:
                per_image.append({"id": s.id, **binary_scores(binary, mask > 0, pred, fov)})
    names = {}
    if mode in ("clusters", "kmeans") and matcher is not None:
        names = {k: name for name, k in matcher.compute(mapping)["mapping"].items()}
    for image, pred, stem, sid in legend_later:  # with the structures' names once the clusters are matched
        shown = {k: f"cluster {k} = {names[k]}" if k in names else f"cluster {k}" for k in range(K)}
        save_cluster_legend_figure(_middle_slice(image, pred.ndim), _middle_slice(pred, pred.ndim), palette(K), shown,
                                   out / "overlays" / f"{stem}_legend.png", title=f"{sid}: {mode}" + (" (matched to the labels)" if names else ""))
    if not with_masks:
        return {"num_images": len(samples), "mode": mode}
    if mode in ("clusters", "kmeans"):
        assert matcher is not None
        metrics = {"mode": mode, **matcher.compute(mapping), "matched_on": "these images" if mapping is None else "a given mapping"}
        metrics["per_image_ids"] = [s.id for s in samples]
    else:
        keys = [k for k in per_image[0] if k != "id"]
        metrics = {"mode": mode, "rule": rule, "num_images": len(per_image),
                   **{k: float(np.nanmean([r[k] for r in per_image])) for k in keys},
                   **{f"{k}_std": float(np.nanstd([r[k] for r in per_image])) for k in keys},
                   "per_image": per_image}
    (out / "metrics.json").write_text(json.dumps(metrics, indent=2))
    return metrics


def binary_scores(pred: np.ndarray, truth: np.ndarray, prob: np.ndarray | None = None, fov: np.ndarray | None = None) -> dict:
    """Dice, IoU, accuracy (and AUC with ``prob``) of a binary prediction inside ``fov``."""
    keep = np.ones(pred.shape, bool) if fov is None else fov.astype(bool)
    p, t = pred[keep].astype(bool), truth[keep].astype(bool)
    inter, ps, ts = (p & t).sum(), p.sum(), t.sum()
    out = {
        "dice": float(2 * inter / (ps + ts)) if ps + ts else 1.0,
        "iou": float(inter / (ps + ts - inter)) if ps + ts else 1.0,
        "accuracy": float((p == t).mean()),
    }
    if prob is not None and 0 < ts < t.size:
        from sklearn.metrics import roc_auc_score  # deferred: heavy optional dependency, loaded only when used

        out["auc"] = float(roc_auc_score(t, prob[keep]))
    return out
