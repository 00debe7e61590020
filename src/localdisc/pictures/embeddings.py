"""Pictures of pixel embeddings: PCA-to-RGB maps and cluster argmax maps beside the input.

One row per image: input | first three principal components of v as RGB | argmax_k a
(colored) when assignments are given. The PCA basis is fit jointly on all images so colors
are comparable across rows. 3D volumes show their middle slice (along the first axis).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw, ImageFont

# 20 well-separated colors (tab20-like), cycled for K > 20
_PALETTE = np.array(
    [[31, 119, 180], [255, 127, 14], [44, 160, 44], [214, 39, 40], [148, 103, 189], [140, 86, 75], [227, 119, 194], [127, 127, 127],
     [188, 189, 34], [23, 190, 207], [174, 199, 232], [255, 187, 120], [152, 223, 138], [255, 152, 150], [197, 176, 213], [196, 156, 148],
     [247, 182, 210], [199, 199, 199], [219, 219, 141], [158, 218, 229]], dtype=np.uint8)  # fmt: skip


def middle_slice(x: torch.Tensor) -> torch.Tensor:
    """(B, C, *S) -> (B, C, H, W): 2D unchanged, 3D the middle slice of the first spatial axis."""
    return x if x.dim() == 4 else x[:, :, x.shape[2] // 2]


def pca_rgb(v: torch.Tensor, max_fit: int = 20000) -> np.ndarray:
    """v (B, D, H, W) -> uint8 (B, H, W, 3): projection on the top-3 principal components,
    each scaled to [0, 255] by its 1st-99th percentile over all images."""
    B, D, H, W = v.shape
    X = v.detach().float().cpu().permute(0, 2, 3, 1).reshape(-1, D)
    fit = X[torch.randperm(X.shape[0], generator=torch.Generator().manual_seed(0))[:max_fit]]
    mean = fit.mean(0)
    _, _, Vt = torch.linalg.svd(fit - mean, full_matrices=False)
    comps = Vt[: min(3, D)]
    Y = (X - mean) @ comps.T
    if Y.shape[1] < 3:
        Y = torch.cat([Y, torch.zeros(Y.shape[0], 3 - Y.shape[1])], 1)
    lo, hi = torch.quantile(Y[:: max(1, Y.shape[0] // 100000)], torch.tensor([0.01, 0.99]), dim=0)
    Y = ((Y - lo) / (hi - lo).clamp_min(1e-8)).clamp(0, 1)
    return (Y.reshape(B, H, W, 3).numpy() * 255).astype(np.uint8)


def cluster_rgb(a: torch.Tensor) -> np.ndarray:
    """a (B, K, H, W) -> uint8 (B, H, W, 3): color of argmax_k a."""
    idx = a.detach().argmax(1).cpu().numpy()
    return _PALETTE[idx % len(_PALETTE)]


def image_rgb(x: torch.Tensor) -> np.ndarray:
    """x (B, C, H, W) in [0, 1] -> uint8 (B, H, W, 3) (gray repeated, extra channels dropped)."""
    x = x.detach().float().cpu().clamp(0, 1)
    x = x[:, :3] if x.shape[1] >= 3 else x[:, :1].repeat(1, 3, 1, 1)
    return (x.permute(0, 2, 3, 1).numpy() * 255).astype(np.uint8)


def titled_grid(columns: list[np.ndarray], titles: list[str], gap: int = 4, min_side: int = 160) -> np.ndarray:
    """uint8 picture of tiles: ``columns[j]`` (B, H, W, 3) is column j, one row per image, under
    a header naming each column. Small tiles are enlarged (nearest) to ``min_side`` pixels so
    titles fit and pixels stay visible."""

    B, H, W, _ = columns[0].shape
    k = max(1, -(-min_side // max(H, W)))  # integer zoom
    H, W = H * k, W * k
    header = 28
    out = np.full((header + B * (H + gap) - gap, len(columns) * (W + gap) - gap, 3), 255, np.uint8)
    for i in range(B):
        for j, c in enumerate(columns):
            tile = c[i].repeat(k, 0).repeat(k, 1)
            out[header + i * (H + gap) : header + i * (H + gap) + H, j * (W + gap) : j * (W + gap) + W] = tile
    im = Image.fromarray(out)
    draw = ImageDraw.Draw(im)
    font = ImageFont.load_default(size=15)
    for j, title in enumerate(titles):
        x = j * (W + gap) + W / 2
        draw.text((x, header / 2), title, fill=(0, 0, 0), font=font, anchor="mm")
    return np.asarray(im)


def embedding_figure(images: torch.Tensor, v: torch.Tensor, a: torch.Tensor | None = None, gap: int = 4) -> np.ndarray:
    """uint8 panel with titled columns: input | PCA(v) | clusters(a), one row per image."""
    images, v = middle_slice(images), middle_slice(v)
    cols = [image_rgb(images), pca_rgb(v)]
    titles = ["input", "embedding (3 principal comp.)"]
    if a is not None:
        cols.append(cluster_rgb(middle_slice(a)))
        titles.append("clusters (argmax)")
    return titled_grid(cols, titles, gap)


def save_embedding_figure(images: torch.Tensor, v: torch.Tensor, a: torch.Tensor | None, path: str | Path) -> Path:
    """Write :func:`embedding_figure` as PNG (parent folders created)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(embedding_figure(images, v, a)).save(path)
    return path


__all__ = ["middle_slice", "pca_rgb", "cluster_rgb", "image_rgb", "titled_grid", "embedding_figure", "save_embedding_figure"]
