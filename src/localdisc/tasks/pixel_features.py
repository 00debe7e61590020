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
"""

from __future__ import annotations

from typing import Iterable, Sequence

import torch
import torch.nn.functional as F

from ..errors import ConfigError
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
        from ..data.datasets import resize_image

        x = resize_image(torch.as_tensor(image).float(), self.size)
        return pixel_features(x, self.parts, self.method).numpy()

    def fit(self, features: Sequence["np.ndarray"]) -> "PixelKMeans":
        import numpy as np
        from sklearn.cluster import KMeans

        X = np.concatenate(list(features))
        X = X[np.random.default_rng(self.seed).permutation(len(X))[: self.max_pixels]]
        self.kmeans = KMeans(self.num_clusters, n_init=self.n_init, random_state=self.seed).fit(X)
        return self

    def fit_images(self, images: Iterable, count: int) -> "PixelKMeans":
        """Fit on ``count`` images (C, *S) given one at a time, keeping a random
        ceil(max_pixels / count) pixels of each: memory stays bounded on a large dataset."""
        import numpy as np

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
