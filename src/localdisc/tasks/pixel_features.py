"""Per-pixel feature vectors for clustering images without labels (k-means and the like).

A feature set is a list of parts, each a block of columns of the (H*W, F) matrix:

- ``position``: the pixel's coordinates, each in [-1, 1] (2 columns in 2D, 3 in 3D);
- ``intensity``: the grey value (channel mean), z-scored over the image, at half weight, so a
  unit of contrast counts like a quarter of the image's width;
- ``embedding``: the pretrained model's pixel embedding v (unit vectors, D columns);
- ``deep``: the backbone's deepest encoder level (unit vectors, bilinearly upsampled to the
  model grid). Its receptive field covers much of the image, so it says which region a pixel
  lies in (lung field or mediastinum) where v, trained to tell neighbouring patches apart,
  describes local texture (benchmarks/results/cluster_cxr.md).

Each unit-vector part has norm 1 per pixel, the same scale as ``position``, so no part drowns
the others by its width.

Scored against labels (:func:`kmeans_chosen_on_train`): the number of clusters N and the
cluster -> structure matching (Hungarian on Dice) are chosen on TRAINING images and applied to
the test images, as a user who labels a few images to name the clusters would;
:func:`average_seeds` merges k-means seeds, :func:`reinitialized` gives the untrained control
(the same network, new random weights: what pretraining adds to any network's features).
"""

from __future__ import annotations

import copy
from typing import Any, Iterable, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from ..data.datasets import resize_image
from ..data.records import Sample, load_sample_image, load_sample_mask
from ..errors import ConfigError
from ..evaluation.hungarian import ClusterMatcher, one_hot_structures
from ..utils import progress

FEATURE_PARTS = ("position", "intensity", "embedding", "deep")
NEEDS_MODEL = ("embedding", "deep")


def parse_parts(spec: str | Sequence[str]) -> tuple[str, ...]:
    """"deep+intensity+position" (or a list) -> ("deep", "intensity", "position"); loud on unknown names."""
    parts = tuple(p.strip() for p in (spec.split("+") if isinstance(spec, str) else spec) if p.strip())
    bad = [p for p in parts if p not in FEATURE_PARTS]
    if bad or not parts:
        raise ConfigError(f"unknown pixel feature {', '.join(bad) or '(none given)'}; valid: {', '.join(FEATURE_PARTS)}, joined by +")
    return parts


def position_grid(size: Sequence[int]) -> torch.Tensor:
    """(d, *size): each pixel's coordinates, each axis spanning [-1, 1]."""
    return torch.stack(torch.meshgrid(*[torch.linspace(-1, 1, n) for n in size], indexing="ij"))


@torch.no_grad()
def pixel_features(image: torch.Tensor, parts: str | Sequence[str], method=None) -> torch.Tensor:
    """image (C, *S), already at the model's size -> (prod(S), F) float32 features on the CPU.

    ``method``: a pretraining method (``embed(x)`` and ``backbone.forward_features(x)``), needed
    for the ``embedding`` and ``deep`` parts; it runs on its own device."""
    parts = parse_parts(parts)
    size = tuple(image.shape[1:])
    x = image.float()[None]
    blocks = []
    for part in parts:
        if part == "position":
            blocks.append(position_grid(size))
        elif part == "intensity":
            g = x.mean(1)[0]
            blocks.append(0.5 * (g - g.mean())[None] / g.std().clamp(min=1e-6))
        else:
            if method is None:
                raise ConfigError(f"pixel feature {part!r} needs a pretrained model")
            device = next(method.parameters()).device
            xd = x.to(device)
            if part == "embedding":
                f = method.embed(xd)
            else:
                f = method.backbone.forward_features(xd).encoder[-1]
                mode = "bilinear" if len(size) == 2 else "trilinear"
                f = F.interpolate(F.normalize(f.float(), dim=1), size=size, mode=mode, align_corners=False)
            blocks.append(F.normalize(f.float(), dim=1)[0].cpu())
    return torch.cat(blocks, 0).flatten(1).T.contiguous()


class PixelKMeans:
    """k-means over pixel features of images at the model's size; cluster maps at each image's own size.

    ``features(image)`` (C, *S_orig) numpy -> (prod(size), F); ``fit`` on a list of those (at
    most ``max_pixels`` pixels, drawn at random with ``seed``); ``assign`` gives the (*S_orig)
    int64 map of one image's features, upsampled by nearest neighbour; ``predict`` does both."""

    def __init__(self, parts: str | Sequence[str], num_clusters: int, size: Sequence[int], method=None, seed: int = 0, max_pixels: int = 100_000, n_init: int = 4):
        self.parts = parse_parts(parts)
        if any(p in NEEDS_MODEL for p in self.parts) and method is None:
            raise ConfigError(f"pixel features {'+'.join(self.parts)} need a pretrained model")
        if num_clusters < 2:
            raise ConfigError(f"k-means needs at least 2 clusters, got {num_clusters}")
        self.num_clusters, self.size, self.method = num_clusters, tuple(size), method
        self.seed, self.max_pixels, self.n_init = seed, max_pixels, n_init
        self.kmeans = None

    def features(self, image) -> "np.ndarray":
        x = resize_image(torch.as_tensor(image).float(), self.size)
        return pixel_features(x, self.parts, self.method).numpy()

    def fit(self, features: Sequence["np.ndarray"]) -> "PixelKMeans":
        from sklearn.cluster import KMeans  # deferred: heavy optional dependency, loaded only when used

        X = np.concatenate(list(features))
        X = X[np.random.default_rng(self.seed).permutation(len(X))[: self.max_pixels]]
        self.kmeans = KMeans(self.num_clusters, n_init=self.n_init, random_state=self.seed).fit(X)
        return self

    def fit_images(self, images: Iterable, count: int) -> "PixelKMeans":
        """Fit on ``count`` images (C, *S) given one at a time, keeping a random
        ceil(max_pixels / count) pixels of each: memory stays bounded on a large dataset."""

        rng = np.random.default_rng(self.seed)
        per_image = -(-self.max_pixels // max(1, count))
        kept = []
        for image in progress(images, total=count, desc="k-means features"):
            f = self.features(image)
            kept.append(f[rng.permutation(len(f))[:per_image]])
        return self.fit(kept)

    def assign(self, features: "np.ndarray", shape: Sequence[int]) -> "np.ndarray":
        if self.kmeans is None:
            raise ConfigError("PixelKMeans: call fit() before assign()")
        lab = torch.from_numpy(self.kmeans.predict(features).reshape(self.size))[None, None].float()
        return F.interpolate(lab, size=tuple(shape), mode="nearest-exact")[0, 0].long().numpy()

    def predict(self, image) -> "np.ndarray":
        return self.assign(self.features(image), image.shape[1:])

    def describe(self) -> dict:
        """What reproduces the clustering: features, N, seed, and the cluster centres."""
        return {"features": "+".join(self.parts), "num_clusters": self.num_clusters, "size": list(self.size), "seed": self.seed,
                "centers": None if self.kmeans is None else self.kmeans.cluster_centers_.tolist()}


def reinitialized(module: torch.nn.Module, seed: int) -> torch.nn.Module:
    """A copy of ``module`` with every layer's parameters and running statistics re-drawn with
    ``seed``: the untrained control for features any network of this shape computes."""
    module = copy.deepcopy(module)
    torch.manual_seed(seed)
    for m in module.modules():
        if hasattr(m, "reset_parameters"):
            m.reset_parameters()
        if hasattr(m, "reset_running_stats"):
            m.reset_running_stats()
    return module


def score_kmeans(km: PixelKMeans, data: Sequence[tuple[np.ndarray, tuple[int, ...], Sample]], mapping: dict[str, int] | None = None) -> dict[str, Any]:
    """Hungarian-matched Dice (:meth:`ClusterMatcher.compute`) of a fitted k-means on ``data``:
    (features, original size, sample) per image; ``mapping`` applies a matching made elsewhere."""
    matcher = None
    for f, shape, s in data:
        mask = load_sample_mask(s)
        names = list(s.extra.get("class_names") or [])[1:] or [f"class{c}" for c in range(1, int(mask.max()) + 1)]
        matcher = matcher or ClusterMatcher(km.num_clusters, names)
        matcher.update(km.assign(f, shape), one_hot_structures(mask, range(1, len(names) + 1)))
    return matcher.compute(mapping)


def kmeans_chosen_on_train(parts: str, model, train: Sequence[Sample], test: Sequence[Sample], choices: Sequence[int], seed: int = 0) -> dict[str, Any]:
    """k-means on the pixel features ``parts`` of ``model`` (a RunModel: method, size, channels)
    for each N in ``choices``, fitted on the training images' pixels; the N with the best
    matched Dice on the training images, and its matching, applied to ``test``.

    Returns the test scores (``ClusterMatcher.compute``) plus ``matched_on_test`` (the matching
    chosen on the test images themselves: optimistic), ``num_clusters_chosen_on_train`` and
    ``mean_dice_on_train``."""
    def featurize(km, samples):
        return [(km.features(image := load_sample_image(s, model.channels)), image.shape[1:], s) for s in samples]

    candidates = [PixelKMeans(parts, n, model.size, model.method, seed=seed) for n in choices]
    tr, te = featurize(candidates[0], train), featurize(candidates[0], test)  # the features do not depend on N
    best = None
    for km in candidates:
        on_train = score_kmeans(km.fit([f for f, _, _ in tr]), tr)
        if best is None or on_train["mean_dice"] > best[1]["mean_dice"]:
            best = (km, on_train)
    km, on_train = best
    return {**score_kmeans(km, te, on_train["mapping"]), "matched_on_test": score_kmeans(km, te),
            "num_clusters_chosen_on_train": km.num_clusters, "mean_dice_on_train": on_train["mean_dice"]}


def average_seeds(rows: Sequence[dict[str, Any]], keys: Sequence[str] = ("mapping", "dice_pooled", "num_clusters")) -> dict[str, Any]:
    """One result from :func:`kmeans_chosen_on_train` runs of several seeds: per-structure Dice
    averaged over seeds and images, ``dice_std`` the SD over images of the seed-averaged Dice;
    ``keys`` copied from the first seed; N the choice of each seed ("3/4/3" when they differ)."""
    def merge(rs):
        per_image = np.mean([r["per_image"] for r in rs], axis=0)  # (images, structures)
        names = list(rs[0]["dice"])
        return {**{k: rs[0][k] for k in keys if k in rs[0]}, "dice": {n: float(per_image[:, c].mean()) for c, n in enumerate(names)},
                "dice_std": {n: float(per_image[:, c].std()) for c, n in enumerate(names)}, "mean_dice": float(per_image.mean())}

    ns = [r["num_clusters_chosen_on_train"] for r in rows]
    return {**merge(rows), "matched_on_test": merge([r["matched_on_test"] for r in rows]), "seeds": len(rows),
            "num_clusters_chosen_on_train": ns[0] if len(set(ns)) == 1 else "/".join(map(str, ns)),
            "mean_dice_on_train": float(np.mean([r["mean_dice_on_train"] for r in rows]))}


def per_image_mean_dice(rows: Sequence[dict[str, Any]]) -> np.ndarray:
    """(images, seeds): each test image's Dice averaged over the structures, one column per seed's
    result; the input of :func:`localdisc.evaluation.stats.paired_difference`."""
    return np.array([np.mean(r["per_image"], axis=1) for r in rows]).T
