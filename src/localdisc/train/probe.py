"""A progress signal for pretraining: the Dice of a cheap probe on frozen pixel features.

Every ``--probe-every`` steps, :func:`probe_dice` embeds a few LABELED images with the model
being pretrained (no gradient, eval mode), fits a linear classifier (multinomial logistic
regression) to the pixel features of ``--probe-labels`` of them and scores the mean foreground
Dice on other, held-out labeled images. A rising curve says pretraining still learns features
that separate the structures; a flat one says more steps will not buy much.

Honest by construction (:func:`probe_split`): fitting and scoring images are disjoint, both come
from the TRAIN split of the probe data (a layout's own split, or train/test assigned by
``split_seed`` as fine-tuning does), and test images are never touched.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from ..data.datasets import ImageDataset
from ..data.sources import resolve_source
from ..data.splits import label_budget
from ..errors import ConfigError
from ..evaluation.metrics import dice_per_class
from .finetune_data import assigned_splits


@dataclass
class ProbeSet:
    fit_images: torch.Tensor  # (n_fit, C, *S)
    fit_masks: torch.Tensor  # (n_fit, *S) int64 class indices
    score_images: torch.Tensor  # (n_score, C, *S)
    score_masks: torch.Tensor
    fit_ids: list[str]
    score_ids: list[str]
    num_classes: int


def probe_split(spec: str, n_fit: int, n_score: int, seed: int = 0, split_seed: int = 0) -> tuple[list, list]:
    """(fit samples, score samples): disjoint, from the train split only; ``n_fit`` chosen by
    ``seed`` (as a fine-tuning label budget), the next ``n_score`` train images for scoring."""

    samples = assigned_splits(resolve_source(spec, seed=split_seed), split_seed, 0.2)
    train = [s for s in samples if s.split == "train" and s.mask is not None]
    if len(train) < n_fit + 1:
        raise ConfigError(f"--probe-data {spec}: needs at least {n_fit + 1} labeled training images (has {len(train)})")
    fit = label_budget(train, n_fit, seed)
    chosen = {s.id for s in fit}
    score = [s for s in train if s.id not in chosen][:n_score]
    return fit, score


def build_probe_set(spec: str, n_fit: int, n_score: int, image_size: tuple[int, ...], channels: int, seed: int = 0) -> ProbeSet:
    fit, score = probe_split(spec, n_fit, n_score, seed)
    ds = ImageDataset(fit + score, image_size, channels, with_masks=True, cache=False)
    items = [ds[i] for i in range(len(ds))]
    images, masks = torch.stack([x["image"] for x in items]), torch.stack([x["mask"] for x in items]).long()
    names = fit[0].extra.get("class_names") or []
    k = len(fit)
    return ProbeSet(images[:k], masks[:k], images[k:], masks[k:], [s.id for s in fit], [s.id for s in score],
                    max(2, len(names), int(masks.max()) + 1))


@torch.no_grad()
def pixel_features(model: torch.nn.Module, images: torch.Tensor) -> torch.Tensor:
    """(B, D, *S) frozen per-pixel features: the method's own dense embedding when it has one of
    the input's size (LD's v), else the U-Net's full-resolution decoder trunk."""
    embed = getattr(model, "embed", None)
    if embed is not None:
        f = embed(images)
        if f.dim() == images.dim() and f.shape[2:] == images.shape[2:]:
            return f
    return model.backbone.forward_features(images).trunk


def _pixels(features: torch.Tensor) -> np.ndarray:
    return features.float().movedim(1, -1).reshape(-1, features.shape[1]).cpu().numpy()


def probe_dice(model: torch.nn.Module, probe: ProbeSet, device: torch.device, pixels_per_image: int = 4000, seed: int = 0) -> float:
    """Mean foreground Dice (over classes, then held-out images) of a logistic-regression probe."""
    from sklearn.linear_model import LogisticRegression  # deferred: heavy optional dependency, loaded only when used

    was = model.training
    model.eval()
    try:
        fit = _pixels(pixel_features(model, probe.fit_images.to(device)))
        score = pixel_features(model, probe.score_images.to(device))
    finally:
        model.train(was)
    y = probe.fit_masks.reshape(-1).numpy()
    rng = np.random.default_rng(seed)
    per = fit.shape[0] // probe.fit_masks.shape[0]
    take = np.concatenate([i * per + rng.choice(per, min(per, pixels_per_image), replace=False) for i in range(probe.fit_masks.shape[0])])
    if len(np.unique(y[take])) < 2:
        return float("nan")  # the fitting images show a single class: nothing to separate
    mean, std = fit[take].mean(0), fit[take].std(0) + 1e-6
    clf = LogisticRegression(max_iter=300, C=1.0).fit((fit[take] - mean) / std, y[take])
    dices = []
    for i in range(score.shape[0]):
        pred = clf.predict((_pixels(score[i : i + 1]) - mean) / std).reshape(probe.score_masks.shape[1:])
        dices.append(float(np.nanmean(dice_per_class(pred, probe.score_masks[i].numpy(), probe.num_classes))))
    return float(np.mean(dices))


def save_probe_plot(rows: list[tuple[int, float]], path) -> None:
    """Probe Dice against pretraining step (pictures/probe_dice.png)."""
    import matplotlib  # deferred: heavy optional dependency, loaded only when used

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # deferred: heavy optional dependency, loaded only when used

    fig, ax = plt.subplots(figsize=(4.5, 3.2), dpi=110)
    steps, dice = zip(*rows) if rows else ((), ())
    ax.plot(steps, dice, "o-", color="#e41a1c")
    ax.set_xlabel("pretraining step")
    ax.set_ylabel("probe Dice (held-out images)")
    ax.set_title("linear probe on frozen pixel features", fontsize=9)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)


__all__ = ["ProbeSet", "probe_split", "build_probe_set", "pixel_features", "probe_dice", "save_probe_plot"]
