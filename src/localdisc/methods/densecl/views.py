"""DenseCL views (docs/method.md) with known pixel correspondence, built on device in one batch.

``match="geometric"`` (default): both views share ONE random affine crop and differ by
photometric jitter; view 2 also gets a random exact rot90/flip (``ops``) that
:func:`align` undoes on the network's dense maps, so location p of view 1 and location p of
the aligned view 2 show the same anatomy (exact correspondence, no matching needed).
``match="feature"``: two independent crops (as SimCLR/DenseCL); correspondences are found
later by feature similarity (:func:`localdisc.losses.densecl.match_by_similarity`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from .. import augment
from ..simclr.views import geometry, jitter, view_size


@dataclass
class DenseViews:
    v1: torch.Tensor  # (n, C, *size)
    v2: torch.Tensor  # (n, C, *size), rot90/flipped by ops when geometric
    ops: list[augment.Dihedral] | None  # None: no exact correspondence (feature matching)


def make_views(images: torch.Tensor, cfg: Any) -> DenseViews:
    size = view_size(images, cfg.crop_size)
    if cfg.match == "feature":
        return DenseViews(jitter(geometry(images, cfg, size), cfg), jitter(geometry(images, cfg, size), cfg), None)
    geo = geometry(images, cfg, size)
    v1, v2 = jitter(geo, cfg), jitter(geo, cfg)
    ops = augment.sample_dihedral(images.shape[0], size) if cfg.dihedral else None
    if ops is not None:
        v2 = augment.apply_dihedral(v2, ops)
    return DenseViews(v1, v2, ops)


def align(maps: torch.Tensor, views: DenseViews) -> torch.Tensor:
    """Undo view 2's rot90/flip on its dense maps (n, D, *s) so they line up with view 1."""
    return augment.invert_dihedral(maps, views.ops) if views.ops is not None else maps


__all__ = ["DenseViews", "make_views", "align"]
