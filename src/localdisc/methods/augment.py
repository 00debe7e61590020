"""Batched, dimension-agnostic augmentations on device (shared by all pretraining methods).

Every function takes a batch ``(B, C, *S)`` (S = (H, W) or (D, H, W)) on any device and
draws its randomness from the torch global RNG (which checkpoints save), so ``--resume``
repeats the same views.

Geometry is one affine sampling grid per sample (random resized crop + flips + small
rotation), built with ``F.affine_grid``: :func:`random_affine` returns the parameters
``theta`` so the SAME geometry can be applied to several views or to label maps.
Photometric jitter (:func:`photometric`) is per sample and per call. Exact dihedral ops
(:func:`sample_dihedral`, :func:`apply_dihedral`, :func:`invert_dihedral`) are pure index
permutations (``torch.rot90`` / ``torch.flip``), so undoing them is exact.

Coordinate convention of ``theta`` (as in ``F.affine_grid``): normalized coordinates in
[-1, 1], ordered (x, y[, z]) = (W, H[, D]), i.e. reversed spatial order; an output point o
samples the input at ``theta[:, :, :d] @ o + theta[:, :, d]``.
"""

from __future__ import annotations

import math
from typing import NamedTuple, Sequence

import torch
import torch.nn.functional as F


def _uniform(n: int, lo: float, hi: float, device=None) -> torch.Tensor:
    return torch.rand(n, device=device) * (hi - lo) + lo


def _rotation(n: int, d: int, max_degrees: float, device=None) -> torch.Tensor:
    """(n, d, d) rotations: 2D any angle in +-max; 3D the same about a random plane."""
    angle = _uniform(n, -max_degrees, max_degrees, device) * math.pi / 180
    R = torch.eye(d, device=device).repeat(n, 1, 1)
    planes = [(0, 1)] if d == 2 else [(0, 1), (0, 2), (1, 2)]
    pick = torch.randint(len(planes), (n,), device=device)
    c, s = torch.cos(angle), torch.sin(angle)
    for j, (p, q) in enumerate(planes):
        sel = pick == j
        R[sel, p, p], R[sel, q, q] = c[sel], c[sel]
        R[sel, p, q], R[sel, q, p] = -s[sel], s[sel]
    return R


def random_affine(
    n: int,
    spatial_dims: int,
    scale: Sequence[float] = (0.3, 1.0),
    ratio: Sequence[float] = (3 / 4, 4 / 3),
    rotate_degrees: float = 15.0,
    flip: bool = True,
    device=None,
) -> torch.Tensor:
    """Random resized crop + flips + rotation as affine parameters ``theta`` (n, d, d+1).

    The crop covers a fraction ``a ~ U(scale)`` of the input area (volume), with per-axis
    aspect ``exp(U(log ratio))``; its center is uniform so the (unrotated) crop stays inside.
    Each axis is flipped with probability 1/2 when ``flip``. Input point = diag(s) R F o + t.
    """
    d = spatial_dims
    area = _uniform(n, scale[0], scale[1], device)
    log_r = _uniform(n * d, math.log(ratio[0]), math.log(ratio[1]), device).view(n, d)
    log_r = log_r - log_r.mean(1, keepdim=True)
    side = (area[:, None] ** (1.0 / d) * torch.exp(log_r)).clamp(max=1.0)  # (n, d) fraction of each side
    center = (torch.rand(n, d, device=device) * 2 - 1) * (1 - side)
    flips = torch.where(torch.rand(n, d, device=device) < 0.5, -1.0, 1.0) if flip else torch.ones(n, d, device=device)
    A = side[:, :, None] * _rotation(n, d, rotate_degrees, device) * flips[:, None, :]
    return torch.cat([A, center[:, :, None]], dim=2)


def affine_grid(theta: torch.Tensor, size: Sequence[int]) -> torch.Tensor:
    """Sampling grid (n, *size, d) for ``theta`` (n, d, d+1) at output spatial ``size``."""
    return F.affine_grid(theta, [theta.shape[0], 1, *size], align_corners=False)


def warp(images: torch.Tensor, grid: torch.Tensor, mode: str = "bilinear", padding_mode: str = "reflection") -> torch.Tensor:
    """images (n, C, *S_in) sampled at ``grid`` (n, *S_out, d) -> (n, C, *S_out)."""
    return F.grid_sample(images, grid.to(images.dtype), mode=mode, padding_mode=padding_mode, align_corners=False)


def _gaussian_blur(x: torch.Tensor, sigma: float) -> torch.Tensor:
    """Separable Gaussian blur over every spatial dim (reflect padding), same shape."""
    radius = max(1, int(math.ceil(2.5 * sigma)))
    t = torch.arange(-radius, radius + 1, device=x.device, dtype=x.dtype)
    k = torch.exp(-0.5 * (t / sigma) ** 2)
    k = k / k.sum()
    n, c, *S = x.shape
    d = len(S)
    conv = F.conv2d if d == 2 else F.conv3d
    out = x.reshape(n * c, 1, *S)
    for axis in range(d):
        shape = [1, 1] + [1] * d
        shape[2 + axis] = k.numel()
        pad = [0, 0] * d
        pad[2 * (d - 1 - axis)] = pad[2 * (d - 1 - axis) + 1] = radius
        out = conv(F.pad(out, pad, mode="reflect" if S[axis] > radius else "replicate"), k.view(shape))
    return out.view(n, c, *S)


def colour(x: torch.Tensor, saturation: float = 0.0, hue: float = 0.0, grayscale_prob: float = 0.0) -> torch.Tensor:
    """Per-sample colour jitter of RGB images (n, 3, *S) in [0, 1]; other channel counts pass
    through unchanged (grayscale X-ray, CT, MRI have no colour to jitter).

    Luma y = 0.299 R + 0.587 G + 0.114 B (ITU-R BT.601, as torchvision's ColorJitter).
    saturation: x <- y + (x - y) * U(1 - s, 1 + s);  hue: the chroma vector (I, Q) of YIQ is
    rotated by 2 pi U(-h, h) (h in turns, as ColorJitter's hue);  grayscale_prob: x <- (y, y, y)
    with that probability (RandomGrayscale). Strength 0 draws no randomness.
    """
    if x.shape[1] != 3 or not (saturation > 0 or hue > 0 or grayscale_prob > 0):
        return x
    n = x.shape[0]
    view = (n,) + (1,) * (x.dim() - 2)
    luma = lambda t: (0.299 * t[:, 0] + 0.587 * t[:, 1] + 0.114 * t[:, 2]).unsqueeze(1)  # noqa: E731
    if saturation > 0:
        y = luma(x)
        x = y + (x - y) * _uniform(n, 1 - saturation, 1 + saturation, x.device).view(n, 1, *view[1:])
    if hue > 0:
        to_yiq = torch.tensor([[0.299, 0.587, 0.114], [0.596, -0.274, -0.322], [0.211, -0.523, 0.312]], device=x.device, dtype=x.dtype)
        yiq = torch.einsum("ij,nj...->ni...", to_yiq, x)
        angle = _uniform(n, -hue, hue, x.device).to(x.dtype) * 2 * math.pi
        c, s = torch.cos(angle).view(view), torch.sin(angle).view(view)
        i, q = yiq[:, 1], yiq[:, 2]
        yiq = torch.stack([yiq[:, 0], c * i - s * q, s * i + c * q], dim=1)
        x = torch.einsum("ij,nj...->ni...", torch.linalg.inv(to_yiq), yiq)
    if grayscale_prob > 0:
        gray = (torch.rand(n, device=x.device) < grayscale_prob).view(n, 1, *view[1:])
        x = torch.where(gray, luma(x).expand_as(x), x)
    return x


def photometric(
    x: torch.Tensor,
    brightness: float = 0.2,
    contrast: float = 0.2,
    gamma: float = 0.2,
    noise: float = 0.03,
    blur_prob: float = 0.0,
    blur_sigma: float = 1.0,
    saturation: float = 0.0,
    hue: float = 0.0,
    grayscale_prob: float = 0.0,
) -> torch.Tensor:
    """Per-sample intensity and colour jitter of (n, C, *S) images in [0, 1].

    x <- (x - mean) * U(1-contrast, 1+contrast) + mean + U(-brightness, brightness);
    x <- clamp(x, 0, 1) ** exp(U(-gamma, gamma)); colour jitter of RGB images (:func:`colour`:
    saturation, hue, random grayscale); optional Gaussian blur (probability ``blur_prob``,
    sigma ~ U(0.1, blur_sigma)); x <- x + N(0, s^2), s ~ U(0, noise).
    Strength 0 disables a term (then it consumes no randomness and changes nothing).
    """
    n = x.shape[0]
    view = (n,) + (1,) * (x.dim() - 1)
    dims = tuple(range(1, x.dim()))
    if contrast > 0:
        mean = x.mean(dim=dims, keepdim=True)
        x = (x - mean) * _uniform(n, 1 - contrast, 1 + contrast, x.device).view(view) + mean
    if brightness > 0:
        x = x + _uniform(n, -brightness, brightness, x.device).view(view)
    if gamma > 0:
        x = x.clamp(0, 1) ** torch.exp(_uniform(n, -gamma, gamma, x.device)).view(view)
    x = colour(x, saturation, hue, grayscale_prob)
    if blur_prob > 0:
        chosen = torch.rand(n, device=x.device) < blur_prob
        if bool(chosen.any()):
            sigma = float(_uniform(1, 0.1, max(blur_sigma, 0.1)))
            idx = chosen.nonzero().flatten()  # blur only the chosen samples (each is blurred on its own)
            x = x.index_copy(0, idx, _gaussian_blur(x.index_select(0, idx), sigma))
    if noise > 0:
        x = x + torch.randn_like(x) * _uniform(n, 0, noise, x.device).view(view)
    return x


def jitter(x: torch.Tensor, cfg) -> torch.Tensor:
    """:func:`photometric` with the strengths of a method config (brightness, contrast, gamma,
    noise, blur_prob, blur_sigma, saturation, hue, grayscale_prob)."""
    return photometric(x, cfg.brightness, cfg.contrast, cfg.gamma, cfg.noise, cfg.blur_prob, cfg.blur_sigma,
                       cfg.saturation, cfg.hue, cfg.grayscale_prob)


class Dihedral(NamedTuple):
    """An exact rot90/flip of one sample: flip ``flip_dims`` then rotate ``k`` quarter turns
    in ``plane``; dims count spatial axes from 0 (i.e. tensor dim - 1 for (C, *S))."""

    k: int
    plane: tuple[int, int]
    flip_dims: tuple[int, ...]


def sample_dihedral(n: int, size: Sequence[int]) -> list[Dihedral]:
    """n random rot90/flip ops for spatial ``size``; 2D: the 8 symmetries of the square;
    3D: a quarter-turn count in a random plane plus an optional flip of one random axis.
    Odd turns are only drawn in planes whose two sides are equal (the shape must not change)."""
    d = len(size)
    planes = [(0, 1)] if d == 2 else [(0, 1), (0, 2), (1, 2)]
    ops = []
    for _ in range(n):
        plane = planes[int(torch.randint(len(planes), ()))]
        k = int(torch.randint(4, ()))
        if size[plane[0]] != size[plane[1]]:
            k = 2 * (k // 2)
        flip_dims = (int(torch.randint(d, ())),) if bool(torch.rand(()) < 0.5) else ()
        ops.append(Dihedral(k, plane, flip_dims))
    return ops


def _one(x: torch.Tensor, op: Dihedral, inverse: bool) -> torch.Tensor:
    plane = (op.plane[0] + 1, op.plane[1] + 1)  # x is (C, *S)
    flips = tuple(f + 1 for f in op.flip_dims)
    if inverse:
        x = torch.rot90(x, -op.k, plane)
        return torch.flip(x, flips) if flips else x
    x = torch.flip(x, flips) if flips else x
    return torch.rot90(x, op.k, plane)


def apply_dihedral(x: torch.Tensor, ops: Sequence[Dihedral]) -> torch.Tensor:
    """(n, C, *S) -> each sample transformed by its op (exact index permutation)."""
    return torch.stack([_one(x[i], op, False) for i, op in enumerate(ops)])


def invert_dihedral(x: torch.Tensor, ops: Sequence[Dihedral]) -> torch.Tensor:
    """Undo :func:`apply_dihedral`: ``invert_dihedral(apply_dihedral(x, ops), ops) == x``."""
    return torch.stack([_one(x[i], op, True) for i, op in enumerate(ops)])


def sample_shifts(n: int, size: Sequence[int], fraction: float, device=None) -> torch.Tensor:
    """(n, d) integer offsets, each uniform in [-round(fraction * s), round(fraction * s)] for axis size s."""
    limits = [int(round(fraction * s)) for s in size]
    return torch.stack([torch.randint(-m, m + 1, (n,)) for m in limits], dim=1).to(device)


def roll_samples(x: torch.Tensor, shifts: torch.Tensor, inverse: bool = False) -> torch.Tensor:
    """(n, C, *S) -> each sample cyclically shifted by its row of ``shifts`` (n, d): pixel p moves
    to p + shift (mod S). An exact index permutation; ``inverse=True`` moves it back."""
    dims = tuple(d + 1 for d in range(shifts.shape[1]))  # spatial dims of one (C, *S) sample
    sign = -1 if inverse else 1
    return torch.stack([torch.roll(x[i], tuple(sign * int(v) for v in shifts[i]), dims) for i in range(x.shape[0])])


__all__ = ["random_affine", "affine_grid", "warp", "photometric", "Dihedral", "sample_dihedral", "apply_dihedral", "invert_dihedral",
           "sample_shifts", "roll_samples"]
