"""Models-Genesis image distortions (docs/method.md), batched and dimension-agnostic: (n, C, *S) in [0, 1].

Each is applied per sample with its own probability (reference rates: local shuffle 0.5,
non-linear 0.9, painting 0.9 with in-painting 0.2 / out-painting 0.8), in the reference
order shuffle -> non-linear -> painting. Randomness: ``generator`` (a torch.Generator on the
images' device) or the global torch RNG. Outputs keep the shape and stay in [0, 1].

- :func:`bezier_intensity`: a random monotone cubic Bezier curve through (0,0), P1, P2, (1,1)
  maps intensities; with probability ``invert_prob`` the map is reversed (1 - f).
- :func:`local_pixel_shuffle`: pixels are permuted inside a fraction of small w^d windows
  (random grid offset), which destroys texture but keeps the global layout.
- :func:`box_mask` + :func:`paint`: in-painting fills 1-5 boxes of side S/6..S/3 with uniform
  noise; out-painting fills everything with noise except 1-4 boxes of side 3S/7..4S/7.
"""

from __future__ import annotations

from typing import Sequence

import torch


def _rand(shape, generator, device) -> torch.Tensor:
    return torch.rand(shape, generator=generator, device=device)


def _per_sample(x: torch.Tensor, chosen: torch.Tensor, new: torch.Tensor) -> torch.Tensor:
    return torch.where(chosen.view(-1, *([1] * (x.dim() - 1))), new, x)


def bezier_intensity(x: torch.Tensor, invert_prob: float = 0.5, generator=None, points: int = 256) -> torch.Tensor:
    """Per-sample monotone Bezier intensity map. Control x-coordinates in [0, 1] make x(t)
    non-decreasing (its derivative is a Bernstein form with a non-negative discriminant bound),
    so the curve is a function of the input intensity and can be inverted by search."""
    n, dev = x.shape[0], x.device
    p = _rand((n, 2, 2), generator, dev)  # P1, P2: (x, y)
    t = torch.linspace(0, 1, points, device=dev)[None, :]
    b = [(1 - t) ** 3, 3 * (1 - t) ** 2 * t, 3 * (1 - t) * t**2, t**3]
    xs = b[1] * p[:, 0, 0:1] + b[2] * p[:, 1, 0:1] + b[3]  # (n, points), non-decreasing
    ys = b[1] * p[:, 0, 1:2] + b[2] * p[:, 1, 1:2] + b[3]
    v = x.reshape(n, -1).clamp(0, 1).contiguous()
    hi = torch.searchsorted(xs.contiguous(), v).clamp(1, points - 1)
    lo = hi - 1
    x0, x1 = xs.gather(1, lo), xs.gather(1, hi)
    y0, y1 = ys.gather(1, lo), ys.gather(1, hi)
    w = ((v - x0) / (x1 - x0).clamp_min(1e-8)).clamp(0, 1)
    out = (y0 + w * (y1 - y0)).view_as(x)
    invert = _rand((n,), generator, dev) < invert_prob
    return _per_sample(out, invert, 1 - out).to(x.dtype)


def local_pixel_shuffle(x: torch.Tensor, window: int = 4, fraction: float = 0.5, generator=None) -> torch.Tensor:
    """Permute pixels (the same permutation for every channel) inside a random ``fraction`` of
    the w^d windows of a grid with a random offset; border pixels outside whole windows stay
    (no wrap-around, so every shuffle stays local)."""
    n, c, *S = x.shape
    d, dev = len(S), x.device
    w = max(1, min([window, *S]))
    offset = [int(v) for v in (_rand((d,), generator, dev) * w).long().tolist()]
    g = [(s - o) // w for s, o in zip(S, offset)]
    region = (slice(None), slice(None)) + tuple(slice(o, o + gi * w) for o, gi in zip(offset, g))
    core = x[region]
    split = core.reshape(n, c, *[v for gi in g for v in (gi, w)])
    order = [0, 1] + [2 + 2 * i for i in range(d)] + [3 + 2 * i for i in range(d)]
    win = split.permute(order).reshape(n, c, -1, w**d)  # (n, C, windows, w^d)
    perm = _rand((n, win.shape[2], w**d), generator, dev).argsort(-1)
    keep = _rand((n, win.shape[2], 1), generator, dev) >= fraction
    perm = torch.where(keep, torch.arange(w**d, device=dev).expand_as(perm), perm)
    win = win.gather(3, perm[:, None].expand_as(win))
    back = win.reshape(n, c, *g, *([w] * d)).permute([order.index(i) for i in range(2 + 2 * d)]).reshape(core.shape)
    out = x.clone()
    out[region] = back
    return out


def box_mask(n: int, size: Sequence[int], max_boxes: int, side: tuple[float, float], min_boxes: int = 1, generator=None, device=None) -> torch.Tensor:
    """(n, *size) bool: union of min_boxes..max_boxes random axis-aligned boxes per sample,
    each side a fraction U(side) of the image side, fully inside the image."""
    d = len(size)
    count = min_boxes + (_rand((n,), generator, device) * (max_boxes - min_boxes + 1)).long()
    active = torch.arange(max_boxes, device=device)[None, :] < count[:, None]  # (n, K)
    out = active.view(n, max_boxes, *([1] * d))
    for i, s in enumerate(size):
        length = ((side[0] + (side[1] - side[0]) * _rand((n, max_boxes), generator, device)) * s).long().clamp(1, s)
        start = (_rand((n, max_boxes), generator, device) * (s - length + 1)).long()
        coord = torch.arange(s, device=device)
        inside = (coord >= start[..., None]) & (coord < (start + length)[..., None])  # (n, K, s)
        out = out & inside.view(n, max_boxes, *[s if j == i else 1 for j in range(d)])
    return out.any(dim=1)


def paint(x: torch.Tensor, inpaint_rate: float = 0.2, generator=None) -> torch.Tensor:
    """In-painting (probability ``inpaint_rate``) or out-painting per sample."""
    n, _, *S = x.shape
    dev = x.device
    noise = _rand(x.shape, generator, dev).to(x.dtype)
    inner = box_mask(n, S, 5, (1 / 6, 1 / 3), generator=generator, device=dev)[:, None]
    outer = box_mask(n, S, 4, (3 / 7, 4 / 7), generator=generator, device=dev)[:, None]
    inpainted = torch.where(inner, noise, x)
    outpainted = torch.where(outer, x, noise)
    return _per_sample(outpainted, _rand((n,), generator, dev) < inpaint_rate, inpainted)


def distort(
    x: torch.Tensor,
    shuffle_prob: float = 0.5,
    nonlinear_prob: float = 0.9,
    paint_prob: float = 0.9,
    inpaint_rate: float = 0.2,
    shuffle_window: int = 4,
    shuffle_fraction: float = 0.5,
    generator=None,
) -> torch.Tensor:
    """The Models-Genesis distortion pipeline on a batch: (n, C, *S) -> same shape, in [0, 1]."""
    n, dev = x.shape[0], x.device
    x = x.clamp(0, 1)
    x = _per_sample(x, _rand((n,), generator, dev) < shuffle_prob, local_pixel_shuffle(x, shuffle_window, shuffle_fraction, generator))
    x = _per_sample(x, _rand((n,), generator, dev) < nonlinear_prob, bezier_intensity(x, 0.5, generator))
    x = _per_sample(x, _rand((n,), generator, dev) < paint_prob, paint(x, inpaint_rate, generator))
    return x.clamp(0, 1)


__all__ = ["bezier_intensity", "local_pixel_shuffle", "box_mask", "paint", "distort"]
