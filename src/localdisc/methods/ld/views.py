"""The five LD views of a step (docs/method.md), built on device in one batch.

Pairing: the loop's batch of N images is split in halves, x1 = images[:N/2] and
x2 = images[N/2:], so B = N/2 samples, each with two DIFFERENT images (no image is its own
negative twice). N must be even; ``--batch-size 8`` reproduces the reference's B=4, i.e.
20 network images per step.

Per image (x1 and x2 independently): one random affine geometry (resized crop + flips +
rotation, :func:`~localdisc.methods.augment.random_affine`) to ``size`` is shared by views a
and b; a and b get independent photometric jitter; b additionally gets a random exact
rot90/flip (``ops``) and, with ``shift`` > 0, a random cyclic shift, both of which :func:`align`
undoes on the network's output maps, so pixel p of view a and pixel p of aligned view b show
the same anatomy. The shift is there because a and b share their crop: without it the network
can match patches by where they sit in the view (zero padding tells it), not by what they show. Mixup m = lam x1a + (1-lam) x2a
with lam ~ U(lam_range) per sample. Network input order: (x1a, x2a, x1b, x2b, m), 5B images.

The training step aligns no full-size map: :func:`aligned_patch_embeddings` undoes view b's ops on
the pooled grid, and the region and entropy terms are sums over pixels, the same in any order.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import torch
import torch.nn.functional as F

from ...errors import TrainingError
from ...losses import ld as L
from .. import augment


@dataclass
class LDViews:
    inputs: torch.Tensor  # (5B, C, *size): x1a, x2a, x1b, x2b, m  (b views rot90/flipped)
    lam: torch.Tensor  # (B,)
    ops: list[augment.Dihedral]  # 2B ops applied to (x1b, x2b)
    B: int
    theta: torch.Tensor  # (2B, d, d+1) geometry of (x1, x2), shared by a and b
    shifts: torch.Tensor | None = None  # (2B, d) cyclic shifts applied to (x1b, x2b) after ops

    def patch_embeddings(self, v: torch.Tensor, grid: int) -> torch.Tensor:
        """:func:`aligned_patch_embeddings` of the network output v (5B, D, *size) for these views."""
        return aligned_patch_embeddings(v, self, grid)


def view_size(images: torch.Tensor, crop_size: Sequence[int]) -> tuple[int, ...]:
    size = tuple(int(s) for s in crop_size) or tuple(images.shape[2:])
    if len(size) != images.dim() - 2:
        raise TrainingError(f"crop_size {size} has {len(size)} dims but the images are {images.dim() - 2}D")
    return size


def make_views(images: torch.Tensor, cfg: Any) -> LDViews:
    """images (N, C, *S) in [0, 1], N even -> :class:`LDViews` with inputs (5 N/2, C, *size).

    ``cfg`` provides crop_size, crop_scale, rotate_degrees, flip, dihedral, brightness,
    contrast, gamma, noise, blur_prob, blur_sigma, saturation, hue, grayscale_prob, lam_range
    and optionally shift (see ``LDConfig``)."""
    N = images.shape[0]
    if N < 2 or N % 2:
        raise TrainingError(f"LD pairs two images per sample and needs an even batch of at least 2 images per process; got {N} (set --batch-size to an even number)")
    B, d = N // 2, images.dim() - 2
    size = view_size(images, cfg.crop_size)
    theta = augment.random_affine(N, d, cfg.crop_scale, rotate_degrees=cfg.rotate_degrees, flip=cfg.flip, device=images.device)
    geo = augment.warp(images, augment.affine_grid(theta, size))  # (2B, C, *size): x1, x2
    a = augment.jitter(geo, cfg)
    b = augment.jitter(geo, cfg)
    ops = augment.sample_dihedral(N, size) if cfg.dihedral else [augment.Dihedral(0, (0, 1), ())] * N
    b = augment.apply_dihedral(b, ops)
    shift = float(getattr(cfg, "shift", 0.0) or 0.0)
    # kept on the CPU: roll_samples reads each offset as a Python int, which on a GPU tensor would sync per sample
    shifts = augment.sample_shifts(N, size, shift) if shift > 0 else None
    if shifts is not None:
        b = augment.roll_samples(b, shifts)
    lo, hi = cfg.lam_range
    lam = torch.rand(B, device=images.device) * (hi - lo) + lo
    lam_v = lam.view(B, *([1] * (images.dim() - 1))).to(a.dtype)
    m = lam_v * a[:B] + (1 - lam_v) * a[B:]
    return LDViews(inputs=torch.cat([a, b, m]), lam=lam, ops=ops, B=B, theta=theta, shifts=shifts)


def align(maps: torch.Tensor, views: LDViews) -> torch.Tensor:
    """Undo view b's shift and rot90/flip on per-pixel outputs. maps (5B, C', *size) in input
    order -> same order and shape, with rows 2B..4B mapped back so pixel p matches view a's pixel p."""
    B = views.B
    b = maps[2 * B : 4 * B]
    if views.shifts is not None:
        b = augment.roll_samples(b, views.shifts, inverse=True)
    b = augment.invert_dihedral(b, views.ops)
    return torch.cat([maps[: 2 * B], b, maps[4 * B :]])


def aligned_patch_embeddings(v: torch.Tensor, views: LDViews, grid: int) -> torch.Tensor:
    """Patch embeddings of the aligned maps straight from the network's unaligned output:
    v (5B, D, *size) in input order -> u (5B, G^d, D), equal to
    ``L.patch_embeddings(align(v, views), grid)`` up to float rounding.

    No full-size aligned copy of v: average pooling commutes with view b's rot90/flip (they
    permute whole cells: adaptive cells are symmetric under flips, and rot90 is only drawn in
    planes of equal sides), so the ops are undone on the (D, G, ..., G) grid; b's cyclic shift
    does not commute and is folded into the pooling matrices (``L.cell_means``)."""
    B, d = views.B, v.dim() - 2
    shifts = None
    if views.shifts is not None:
        shifts = torch.zeros(v.shape[0], d, dtype=torch.long)
        shifts[2 * B : 4 * B] = views.shifts.cpu()
    pa, pb, pm = L.cell_means(v, grid, shifts).split([2 * B, 2 * B, B])
    pooled = torch.cat([pa, augment.invert_dihedral(pb, views.ops), pm])  # (5B, D, G, ..., G)
    return F.normalize(pooled.flatten(2).transpose(1, 2), dim=-1)
