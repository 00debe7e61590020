"""Supervised augmentation on batched tensors, 2D or 3D (no per-sample Python transforms).

``augment_batch(images (B, C, *S), labels (B, *S), cfg)`` applies, per sample:
- random flips along each spatial axis; when ``flip_pairs`` is given (e.g. CXR left/right
  lung), a flip of the LAST axis (left-right) swaps those class labels, so anatomy keeps its
  name; ``flip_axes`` can also leave the left-right axis out entirely;
- a small rotation + isotropic scaling through one ``affine_grid`` (bilinear for images,
  nearest for labels, zero/background padding), corrected for non-square sizes;
- intensity jitter: contrast about the image mean, brightness shift, gamma.

Random numbers come from the torch global CPU RNG (then moved to the device), which
checkpoints save and restore, so resumed runs see the same augmentations.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Sequence

import torch
import torch.nn.functional as F

from ..config import field


@dataclass
class AugmentConfig:
    flip_prob: float = field(0.5, "probability of a flip along each allowed axis")
    flip_axes: tuple[int, ...] = field((), "spatial axes that may flip (0 = first spatial axis); empty = all")
    affine_prob: float = field(0.5, "probability of a random rotation/scaling per sample")
    rotate_deg: float = field(15.0, "maximum rotation in degrees (about each axis in 3D)")
    scale: float = field(0.1, "maximum relative isotropic scaling (0.1 = 0.9..1.1)")
    intensity: float = field(0.1, "brightness/contrast jitter amplitude")
    gamma: float = field(0.2, "log-uniform gamma range: exp(U(-g, g))")


def _flip(images: torch.Tensor, labels: torch.Tensor, cfg: AugmentConfig, flip_pairs: Sequence[Sequence[int]]):
    b, nd = images.shape[0], labels.dim() - 1
    axes = cfg.flip_axes or tuple(range(nd))
    for ax in axes:
        which = (torch.rand(b) < cfg.flip_prob).to(images.device)
        if not which.any():
            continue
        view = (-1,) + (1,) * nd
        images = torch.where(which.view(view + (1,)), images.flip(2 + ax), images)
        flipped = labels.flip(1 + ax)
        if ax == nd - 1 and flip_pairs:
            swapped = flipped.clone()
            for a, c in flip_pairs:
                swapped[flipped == a] = c
                swapped[flipped == c] = a
            flipped = swapped
        labels = torch.where(which.view(view), flipped, labels)
    return images, labels


def _rotation(nd: int, angles: torch.Tensor) -> torch.Tensor:
    """(B, nd, nd) rotation matrices; 2D: one angle, 3D: composed rotations about each axis."""
    c, s = torch.cos(angles), torch.sin(angles)
    if nd == 2:
        return torch.stack([torch.stack([c[:, 0], -s[:, 0]], -1), torch.stack([s[:, 0], c[:, 0]], -1)], 1)
    eye = torch.eye(3).expand(angles.shape[0], 3, 3)
    out = eye
    for k, (i, j) in enumerate(((1, 2), (0, 2), (0, 1))):
        r = eye.clone()
        r[:, i, i], r[:, j, j], r[:, i, j], r[:, j, i] = c[:, k], c[:, k], -s[:, k], s[:, k]
        out = out @ r
    return out


def _affine(images: torch.Tensor, labels: torch.Tensor, cfg: AugmentConfig):
    b, nd = images.shape[0], images.dim() - 2
    n_angles = 1 if nd == 2 else 3
    angles = (torch.rand(b, n_angles) * 2 - 1) * math.radians(cfg.rotate_deg)
    scales = 1.0 + (torch.rand(b) * 2 - 1) * cfg.scale
    apply = torch.rand(b) < cfg.affine_prob
    if not apply.any():
        return images, labels
    mat = _rotation(nd, angles) / scales.view(-1, 1, 1)
    mat = torch.where(apply.view(-1, 1, 1), mat, torch.eye(nd).expand(b, nd, nd))
    # affine_grid works in normalized coords ordered (x=W, y=H[, z=D]); rotate in pixel units.
    size = torch.tensor(images.shape[2:][::-1], dtype=torch.float32)
    mat = mat / size.view(1, -1, 1) * size.view(1, 1, -1)
    theta = torch.cat([mat, torch.zeros(b, nd, 1)], dim=2).to(images.device, images.dtype)
    grid = F.affine_grid(theta, list(images.shape), align_corners=False)
    images = F.grid_sample(images, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    lab = F.grid_sample(labels[:, None].to(images.dtype), grid, mode="nearest", padding_mode="zeros", align_corners=False)
    return images, lab[:, 0].round().to(labels.dtype)


def _intensity(images: torch.Tensor, cfg: AugmentConfig) -> torch.Tensor:
    b, view = images.shape[0], (-1,) + (1,) * (images.dim() - 1)
    contrast = (1.0 + (torch.rand(b) * 2 - 1) * cfg.intensity).view(view).to(images)
    bright = ((torch.rand(b) * 2 - 1) * cfg.intensity).view(view).to(images)
    gamma = torch.exp((torch.rand(b) * 2 - 1) * cfg.gamma).view(view).to(images)
    mean = images.mean(dim=tuple(range(1, images.dim())), keepdim=True)
    out = ((images - mean) * contrast + mean + bright).clamp(0, 1)
    return out.clamp_min(1e-6) ** gamma


def augment_batch(images: torch.Tensor, labels: torch.Tensor, cfg: AugmentConfig | None = None,
                  flip_pairs: Sequence[Sequence[int]] = ()) -> tuple[torch.Tensor, torch.Tensor]:
    """images (B, C, *S) float in [0, 1], labels (B, *S) int64 -> augmented copies (same shapes)."""
    cfg = cfg or AugmentConfig()
    if cfg.flip_prob > 0:
        images, labels = _flip(images, labels, cfg, flip_pairs)
    if cfg.affine_prob > 0 and (cfg.rotate_deg > 0 or cfg.scale > 0):
        images, labels = _affine(images, labels, cfg)
    if cfg.intensity > 0 or cfg.gamma > 0:
        images = _intensity(images, cfg)
    return images, labels
