"""Coarse alignment of a query image to the support from many embedding matches.

One landmark matched on its own can jump to a look-alike; hundreds of anchor points matched at
once agree on where the query's anatomy lies relative to the support's. A robust affine map

    q ~= [s, 1] @ M,   M: (nd + 1, nd),

fitted to the anchors' matches (support position s -> query match q) carries each support
landmark into the query; a local search around that point then refines it (the coarse match
constrains the fine one). Coordinates are model-grid (row, col[, ...]) pixel indices.
"""

from __future__ import annotations

from typing import Sequence

import torch


def anchor_grid(size: Sequence[int], stride: int) -> torch.Tensor:
    """(A, nd) centres of the stride-sized cells that tile ``size`` (model-grid pixel coords)."""
    axes = [torch.arange(stride / 2 - 0.5, s - 0.5, stride, dtype=torch.float32) for s in size]
    return torch.stack([g.flatten() for g in torch.meshgrid(*axes, indexing="ij")], dim=1)


def match_points(desc: torch.Tensor, pooled: torch.Tensor, points: torch.Tensor, radius: float = 0.0, chunk: int = 64) -> tuple[torch.Tensor, torch.Tensor]:
    """Best match of each descriptor in a query map.

    desc (A, D) unit vectors; pooled (D, *S) the query's unit-vector map; points (A, nd) where
    each descriptor came from; radius > 0 (pixels) restricts each search to that ball around its
    point. Returns (matches (A, nd) float, peak similarity (A,)).
    """
    S = pooled.shape[1:]
    grids = torch.meshgrid(*[torch.arange(n, dtype=torch.float32, device=pooled.device) for n in S], indexing="ij")
    flat = pooled.flatten(1)
    dst, peak = [], []
    for i in range(0, desc.shape[0], chunk):
        d, p = desc[i : i + chunk].to(pooled), points[i : i + chunk].to(pooled.device)
        sim = (d @ flat).view(-1, *S)
        if radius > 0:
            d2 = sum((g[None] - p[:, k].view(-1, *([1] * len(S)))) ** 2 for k, g in enumerate(grids))
            sim = sim.masked_fill(d2 > radius * radius, float("-inf"))
        best, idx = sim.flatten(1).max(dim=1)
        dst.append(torch.stack(torch.unravel_index(idx, tuple(S)), dim=1).float())
        peak.append(best)
    return torch.cat(dst).cpu(), torch.cat(peak).cpu()


def fit_affine(src: torch.Tensor, dst: torch.Tensor, weight: torch.Tensor, iters: int = 10, cutoff: float = 3.0) -> torch.Tensor:
    """Robust weighted least squares of dst ~= [src, 1] @ M; src, dst (A, nd), weight (A,) >= 0.

    Iteratively reweighted with Tukey's biweight: residuals beyond ``cutoff`` robust SDs (1.4826
    x the median residual of the inliers, at least 0.5 px) get weight 0, so wrong matches do not
    pull the map. Returns M (nd + 1, nd); the identity map when fewer than nd + 1 anchors have
    weight (the caller then falls back to the support's own positions)."""
    A, nd = src.shape
    X = torch.cat([src.double(), torch.ones(A, 1, dtype=torch.float64)], dim=1)
    Y, w0 = dst.double(), weight.double().clamp(min=0)
    identity = torch.cat([torch.eye(nd, dtype=torch.float64), torch.zeros(1, nd, dtype=torch.float64)])
    w = w0.clone()
    M = identity
    for _ in range(iters):
        if int((w > 0).sum()) < nd + 1:
            return identity.float()
        sw = w.sqrt()[:, None]
        M = torch.linalg.lstsq(X * sw, Y * sw).solution
        r = (X @ M - Y).norm(dim=1)
        scale = (1.4826 * r[w > 0].median()).clamp(min=0.5)
        c = cutoff * scale
        w = w0 * torch.where(r < c, (1 - (r / c) ** 2) ** 2, torch.zeros_like(r))
    return M.float()


def apply_affine(M: torch.Tensor, points: torch.Tensor) -> torch.Tensor:
    """points (L, nd) -> [points, 1] @ M, (L, nd)."""
    return torch.cat([points.float(), torch.ones(points.shape[0], 1)], dim=1) @ M


__all__ = ["anchor_grid", "match_points", "fit_affine", "apply_affine"]
