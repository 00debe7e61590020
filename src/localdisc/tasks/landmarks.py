"""One-shot landmark localization with center-sensitive pooling (docs/method.md, seed 002).

From ONE annotated support image, every landmark is found in each query image:

1. pixel embeddings v (B, D, *S), unit vectors, from a pretrained model (any callable);
2. center-sensitive pooling  v'_p = norm( sum_q w(q - p) v_q )  with a Gaussian w of width
   sigma, computed as a separable Gaussian convolution (2D and 3D). With several sigmas the
   per-scale unit vectors are concatenated and scaled by 1/sqrt(n_sigmas): the result is still a
   unit vector and a dot product equals the mean of the per-scale cosine similarities;
3. support descriptor s = v' at the landmark (bilinear/trilinear sample at sub-pixel coords);
4. prediction = argmax_p v'_p . s in each query, refined to sub-pixel precision by a parabola
   through the peak and its neighbours along every axis; confidence = peak similarity and the
   margin to the best similarity outside a radius of 2 * max(sigma) around the peak.
   Optionally (``search_radius`` > 0) the argmax is restricted to a ball of that radius, a
   fraction of the grid size, around the support's position: for roughly aligned scans
   (chest X-rays, registered volumes) this rules out look-alike structures far away.
5. Optionally (``align="affine"``) coarse to fine: anchor points on a grid over the support are
   matched into the query, a robust affine map is fitted to those matches
   (:mod:`localdisc.tasks.alignment`), and the search ball is centred on each landmark's mapped
   position instead of the support's own (``search_radius`` 0 then means: the mapped point).

Coordinates are (row, col[, ...]) in original-image pixels (index order). Images are resized to
the model's size; coordinates are mapped with the align_corners=False convention that
:func:`localdisc.data.datasets.resize_image` uses.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from ..data.datasets import resize_image
from .alignment import anchor_grid, apply_affine, fit_affine, match_points

EmbedFn = Callable[[torch.Tensor], torch.Tensor]  # (B, C, *S) -> (B, D, *S)


def gaussian_kernel1d(sigma: float, truncate: float = 3.0, dtype=torch.float32) -> torch.Tensor:
    """Discrete 1D Gaussian of width sigma, summing to 1, radius ceil(truncate * sigma)."""
    radius = max(1, int(math.ceil(truncate * sigma)))
    x = torch.arange(-radius, radius + 1, dtype=dtype)
    k = torch.exp(-0.5 * (x / sigma) ** 2)
    return k / k.sum()


def gaussian_smooth(v: torch.Tensor, sigma: float, truncate: float = 3.0) -> torch.Tensor:
    """sum_q w(q - p) v_q with zero padding, as one 1D convolution per spatial axis.

    v: (B, D, *S) with len(S) in (2, 3) -> (B, D, *S).
    """
    if sigma <= 0:
        return v
    B, D, *S = v.shape
    nd = len(S)
    conv = {2: F.conv2d, 3: F.conv3d}[nd]
    k = gaussian_kernel1d(sigma, truncate, v.dtype).to(v.device)
    r = (k.numel() - 1) // 2
    x = v.reshape(B * D, 1, *S)
    for axis in range(nd):
        shape = [1, 1] + [1] * nd
        shape[2 + axis] = k.numel()
        pad = [0] * nd
        pad[axis] = r
        x = conv(x, k.view(shape), padding=tuple(pad))
    return x.reshape(B, D, *S)


def center_pool(v: torch.Tensor, sigmas: Sequence[float]) -> torch.Tensor:
    """Center-sensitive pooling. v: (B, D, *S) -> (B, n_sigmas * D, *S), unit vectors per pixel."""
    sigmas = list(sigmas) or [0.0]
    pooled = [F.normalize(gaussian_smooth(v, float(s)), dim=1) for s in sigmas]
    return torch.cat(pooled, dim=1) / math.sqrt(len(pooled))


def sample_at(v: torch.Tensor, points: torch.Tensor) -> torch.Tensor:
    """Bilinear (trilinear in 3D) sample of v (1, D, *S) at points (L, nd) in pixel index coords -> (L, D)."""
    S = v.shape[2:]
    nd = len(S)
    sizes = torch.tensor(S, dtype=v.dtype, device=v.device)
    norm = 2.0 * points.to(v) / (sizes - 1).clamp(min=1) - 1.0  # align_corners=True: index 0 -> -1
    grid = norm.flip(-1).view(1, -1, *([1] * (nd - 1)), nd)  # grid_sample wants (x, y[, z])
    out = F.grid_sample(v, grid, mode="bilinear", align_corners=True, padding_mode="border")
    return out.reshape(v.shape[1], -1).t()


def _parabola_offset(fm: torch.Tensor, f0: torch.Tensor, fp: torch.Tensor) -> torch.Tensor:
    """Vertex of the parabola through (-1, fm), (0, f0), (1, fp), clamped to [-0.5, 0.5]."""
    denom = fm - 2 * f0 + fp
    off = torch.where(denom < -1e-12, 0.5 * (fm - fp) / denom.clamp(max=-1e-12), torch.zeros_like(f0))
    return off.clamp(-0.5, 0.5)


def refine_peaks(sim: torch.Tensor, radius: float) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Argmax + sub-pixel refinement of similarity maps.

    sim: (L, *S). Returns coords (L, nd) float, peak (L,), margin (L,) where margin = peak minus
    the best similarity farther than ``radius`` pixels from the peak (0 if there is none).
    """
    L, *S = sim.shape
    nd = len(S)
    flat = sim.reshape(L, -1)
    peak, idx = flat.max(dim=1)
    coords = torch.stack(torch.unravel_index(idx, tuple(S)), dim=1)  # (L, nd) long
    refined = coords.to(sim.dtype).clone()
    rows = torch.arange(L, device=sim.device)
    for axis in range(nd):
        lo = coords.clone()
        hi = coords.clone()
        lo[:, axis] = (coords[:, axis] - 1).clamp(min=0)
        hi[:, axis] = (coords[:, axis] + 1).clamp(max=S[axis] - 1)
        inside = (coords[:, axis] > 0) & (coords[:, axis] < S[axis] - 1)
        fm = sim[(rows, *lo.unbind(1))]
        fp = sim[(rows, *hi.unbind(1))]
        inside = inside & torch.isfinite(fm) & torch.isfinite(fp)  # a neighbour outside a search window
        off = _parabola_offset(torch.where(inside, fm, peak), peak, torch.where(inside, fp, peak))
        refined[:, axis] += torch.where(inside, off, torch.zeros_like(off))
    grids = torch.meshgrid(*[torch.arange(s, device=sim.device, dtype=sim.dtype) for s in S], indexing="ij")
    d2 = sum((g[None] - coords[:, i].to(sim.dtype).view(-1, *([1] * nd))) ** 2 for i, g in enumerate(grids))
    far = sim.masked_fill(d2 <= radius**2, float("-inf")).reshape(L, -1).max(dim=1).values
    margin = torch.where(torch.isfinite(far), peak - far, torch.zeros_like(peak))
    return refined, peak, margin


def to_model_coords(points: np.ndarray, orig_size: Sequence[int], model_size: Sequence[int]) -> np.ndarray:
    """Original pixel coords -> model-grid coords (align_corners=False resize)."""
    scale = np.asarray(model_size, float) / np.asarray(orig_size, float)
    return (np.asarray(points, float) + 0.5) * scale - 0.5


def to_orig_coords(points: np.ndarray, orig_size: Sequence[int], model_size: Sequence[int]) -> np.ndarray:
    scale = np.asarray(orig_size, float) / np.asarray(model_size, float)
    return (np.asarray(points, float) + 0.5) * scale - 0.5


@dataclass
class Prediction:
    points: np.ndarray  # (L, nd) original-pixel coords
    score: np.ndarray  # (L,) peak cosine similarity
    margin: np.ndarray  # (L,) peak minus best similarity away from the peak


class OneShotLocator:
    """Find the support's landmarks in query images.

    ``embed``: (B, C, *size) -> (B, D, *size) pixel embeddings; ``size``: the model grid;
    ``sigmas``: Gaussian widths of the center-sensitive pooling, in model-grid pixels;
    ``search_radius``: 0 = search the whole image, else a fraction of the grid's largest side:
    only points that close to the support's (relative) position can be predicted;
    ``align``: "none", or "affine" to centre that search on each landmark carried into the query
    by a robust affine map fitted to the matches of anchor points every ``anchor_stride`` pixels,
    each searched within ``anchor_radius`` (a fraction of the grid's largest side) of its place.
    """

    def __init__(self, embed: EmbedFn, size: Sequence[int], sigmas: Sequence[float] = (2.0, 4.0, 8.0), batch_size: int = 4, search_radius: float = 0.0,
                 align: str = "none", anchor_stride: int = 8, anchor_radius: float = 0.25):
        if search_radius < 0:
            raise ValueError(f"search_radius must be >= 0 (a fraction of the image size), got {search_radius}")
        if align not in ("none", "affine"):
            raise ValueError(f"align must be none or affine, got {align!r}")
        self.align, self.anchor_stride, self.anchor_radius = align, int(anchor_stride), float(anchor_radius)
        self.anchors: torch.Tensor | None = None  # (A, nd) model-grid coords of the anchor points
        self.anchor_desc: torch.Tensor | None = None  # (A, n*D)
        self.embed = embed
        self.size = tuple(int(s) for s in size)
        self.sigmas = [float(s) for s in sigmas]
        self.batch_size = batch_size
        self.search_radius = float(search_radius)
        self.support: torch.Tensor | None = None  # (L, n*D)
        self.support_points: torch.Tensor | None = None  # (L, nd) model-grid coords

    @torch.no_grad()
    def _pooled(self, images: list[torch.Tensor]) -> torch.Tensor:
        x = torch.stack([resize_image(im.float(), self.size) for im in images])
        return center_pool(self.embed(x), self.sigmas)

    @torch.no_grad()
    def fit(self, image: torch.Tensor, points: np.ndarray) -> "OneShotLocator":
        """image (C, *S_orig); points (L, nd) original-pixel coords of the landmarks."""
        pooled = self._pooled([image])
        pts = to_model_coords(points, image.shape[1:], self.size)
        self.support = F.normalize(sample_at(pooled, torch.as_tensor(pts, dtype=pooled.dtype)), dim=1)
        self.support_points = torch.as_tensor(pts, dtype=torch.float32)
        if self.align == "affine":
            self.anchors = anchor_grid(self.size, self.anchor_stride)
            self.anchor_desc = F.normalize(sample_at(pooled, self.anchors.to(pooled)), dim=1)
        return self

    @torch.no_grad()
    def centers(self, pooled: torch.Tensor) -> torch.Tensor:
        """(L, nd) model-grid centres of the search in one query (pooled: (n*D, *size)): the
        support's own positions, or with align="affine" the positions carried over by the map
        fitted to the anchors' matches (weights: peak similarity, the better half only)."""
        if self.align != "affine":
            return self.support_points
        dst, peak = match_points(self.anchor_desc, pooled, self.anchors, self.anchor_radius * max(self.size))
        weight = torch.where(peak >= peak.median(), peak.clamp(min=0), torch.zeros_like(peak))
        return apply_affine(fit_affine(self.anchors, dst, weight), self.support_points)

    def _restrict(self, sim: torch.Tensor, search_radius: float, centers: torch.Tensor | None = None) -> torch.Tensor:
        """sim (L, *size) with -inf outside the search ball around each centre (default: the support points)."""
        if not search_radius:
            return sim
        r = search_radius * max(self.size)
        grids = torch.meshgrid(*[torch.arange(n, dtype=torch.float32, device=sim.device) for n in self.size], indexing="ij")
        c = (self.support_points if centers is None else centers).to(sim.device)
        d2 = sum((g[None] - c[:, i].view(-1, *([1] * len(self.size)))) ** 2 for i, g in enumerate(grids))
        return sim.masked_fill(d2 > r * r, float("-inf"))

    @torch.no_grad()
    def similarity(self, image: torch.Tensor, with_centers: bool = False):
        """(L, *size) cosine similarity maps v'_p . s for one query image; with_centers: also
        the (L, nd) search centres of :meth:`centers`."""
        if self.support is None:
            raise RuntimeError("call fit() with the support image first")
        pooled = self._pooled([image])[0]
        sim = torch.einsum("ld,d...->l...", self.support.to(pooled), pooled)
        return (sim, self.centers(pooled)) if with_centers else sim

    @torch.no_grad()
    def predict(self, images: list[torch.Tensor]) -> list[Prediction]:
        out = []
        for i in range(0, len(images), self.batch_size):
            chunk = images[i : i + self.batch_size]
            pooled = self._pooled(chunk)
            out += [self.answer(pv, im.shape[1:]) for im, pv in zip(chunk, pooled)]
        return out

    @torch.no_grad()
    def answer(self, pooled: torch.Tensor, orig_size: Sequence[int]) -> Prediction:
        """The prediction for one query from its pooled map (n*D, *size), with this locator's
        own window and alignment."""
        sim = torch.einsum("ld,d...->l...", self.support.to(pooled), pooled)
        return self.locate(sim, orig_size, centers=self.centers(pooled) if self.align == "affine" else None)

    @torch.no_grad()
    def locate(self, sim: torch.Tensor, orig_size: Sequence[int], search_radius: float | None = None, centers: torch.Tensor | None = None) -> Prediction:
        """Peaks of one query's similarity maps sim (L, *size) (from :meth:`similarity`), in the
        query's original pixels; ``search_radius`` overrides the locator's own window, so one
        embedding pass can be searched with several windows; ``centers`` (L, nd) centre the
        windows (default: the support's positions). With centres and radius 0 the centres
        themselves are the prediction (score: the similarity there, margin 0)."""
        radius = self.search_radius if search_radius is None else float(search_radius)
        if centers is not None and not radius:
            score = torch.stack([sample_at(sim[i : i + 1, None], centers[i : i + 1])[0, 0] for i in range(sim.shape[0])])
            return Prediction(to_orig_coords(centers.cpu().numpy(), orig_size, self.size), score.cpu().numpy(), np.zeros(sim.shape[0]))
        pts, peak, margin = refine_peaks(self._restrict(sim, radius, centers), 2.0 * max(self.sigmas + [1.0]))
        return Prediction(to_orig_coords(pts.cpu().numpy(), orig_size, self.size), peak.cpu().numpy(), margin.cpu().numpy())


class SupportEnsemble:
    """Several annotated support images, one :class:`OneShotLocator` each (fitted by the caller):
    each landmark is the coordinate-wise median of the per-support answers, robust to one
    support whose match went astray; score and margin are the per-support means."""

    def __init__(self, locators: Sequence[OneShotLocator]):
        if not locators:
            raise ValueError("SupportEnsemble needs at least one fitted locator")
        self.locators = list(locators)

    @torch.no_grad()
    def predict(self, images: list[torch.Tensor]) -> list[Prediction]:
        if len(self.locators) == 1:
            return self.locators[0].predict(images)
        first = self.locators[0]
        out = []
        for im in images:
            pooled = first._pooled([im])[0]  # every locator shares the embedding and sigmas
            preds = [loc.answer(pooled, im.shape[1:]) for loc in self.locators]
            out.append(Prediction(np.median([p.points for p in preds], axis=0), np.mean([p.score for p in preds], axis=0), np.mean([p.margin for p in preds], axis=0)))
        return out


def radial_errors(pred: np.ndarray, truth: np.ndarray, spacing: Sequence[float] | None = None) -> np.ndarray:
    """Euclidean distance per point; pred/truth (..., nd); spacing (nd,) mm per pixel or None."""
    diff = np.asarray(pred, float) - np.asarray(truth, float)
    if spacing is not None:
        diff = diff * np.asarray(spacing, float)
    return np.sqrt((diff**2).sum(-1))


def summarize_errors(errors: Sequence[float], thresholds: Sequence[float] = (2, 4, 8), unit: str = "px") -> dict:
    """Mean radial error (MRE), its SD and median, and success rates within each threshold."""
    e = np.asarray([x for x in errors if np.isfinite(x)], float)
    if e.size == 0:
        return {"n": 0, "unit": unit}
    out = {"n": int(e.size), "unit": unit, "mre": float(e.mean()), "sd": float(e.std()), "median": float(np.median(e))}
    for t in thresholds:
        out[f"sr@{t:g}{unit}"] = float((e <= t).mean())
    return out


def normalized_cross_correlation_locate(support: np.ndarray, point: Sequence[float], query: np.ndarray, half: int = 8) -> np.ndarray:
    """Naive baseline: match the raw-intensity patch around ``point`` by NCC (2D, one channel).

    support, query: (H, W) float arrays on the same grid; returns (row, col) of the best match center.
    """
    from skimage.feature import match_template  # deferred: heavy optional dependency, loaded only when used

    r, c = int(round(point[0])), int(round(point[1]))
    H, W = support.shape
    r0, r1 = max(0, r - half), min(H, r + half + 1)
    c0, c1 = max(0, c - half), min(W, c + half + 1)
    tmpl = support[r0:r1, c0:c1]
    ncc = match_template(query, tmpl, pad_input=False)
    i, j = np.unravel_index(np.argmax(ncc), ncc.shape)
    return np.array([i + (r - r0), j + (c - c0)], float)


def mask_landmarks(mask: np.ndarray) -> dict[str, tuple[float, ...]]:
    """Landmarks of one binary structure mask (*S): centroid, apex (topmost row: the mean
    column of its pixels there) and lowest point, in (row, col[, ...]) index coords.

    For volumes "top"/"bottom" refer to the first spatial axis. Empty masks give {}.
    """
    idx = np.argwhere(np.asarray(mask, bool))
    if idx.size == 0:
        return {}
    top = idx[idx[:, 0] == idx[:, 0].min()].mean(0)
    bottom = idx[idx[:, 0] == idx[:, 0].max()].mean(0)
    return {"centroid": tuple(map(float, idx.mean(0))), "apex": tuple(map(float, top)), "lowest": tuple(map(float, bottom))}
