"""SimCLR views (docs/method.md): two independent random views per image, built on device in one batch.

Each view draws its own geometry (random resized crop + flips + rotation via one affine grid
per sample, :mod:`localdisc.methods.augment`) and its own photometric jitter, then is clamped
to [0, 1]. images (n, C, *S) -> (v1, v2), each (n, C, *size).
"""

from __future__ import annotations

from typing import Any, Sequence

import torch

from ...errors import TrainingError
from .. import augment


def view_size(images: torch.Tensor, crop_size: Sequence[int]) -> tuple[int, ...]:
    size = tuple(int(s) for s in crop_size) or tuple(images.shape[2:])
    if len(size) != images.dim() - 2:
        raise TrainingError(f"crop_size {size} has {len(size)} dims but the images are {images.dim() - 2}D")
    return size


def jitter(x: torch.Tensor, cfg: Any) -> torch.Tensor:
    return augment.jitter(x, cfg).clamp(0, 1)


def geometry(images: torch.Tensor, cfg: Any, size: Sequence[int]) -> torch.Tensor:
    """One random affine crop per sample: (n, C, *S) -> (n, C, *size)."""
    theta = augment.random_affine(images.shape[0], images.dim() - 2, cfg.crop_scale, rotate_degrees=cfg.rotate_degrees, flip=cfg.flip, device=images.device)
    return augment.warp(images, augment.affine_grid(theta, size))


def two_views(images: torch.Tensor, cfg: Any) -> tuple[torch.Tensor, torch.Tensor]:
    """``cfg`` provides crop_size, crop_scale, rotate_degrees, flip, brightness, contrast, gamma,
    noise, blur_prob, blur_sigma, saturation, hue, grayscale_prob (see :class:`~localdisc.methods.simclr.method.SimCLRConfig`)."""
    size = view_size(images, cfg.crop_size)
    return jitter(geometry(images, cfg, size), cfg), jitter(geometry(images, cfg, size), cfg)


__all__ = ["two_views", "geometry", "jitter", "view_size"]
