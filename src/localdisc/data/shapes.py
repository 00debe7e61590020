"""Shape simulator: random anatomical masks for shape priors and synthetic data.

Shapes (all seeded through a ``np.random.Generator``; coordinates in index order):
- :func:`vessel_tree` / :func:`vessel_tree_3d`: branching tubes whose thickness tapers with
  depth, drawn as the union of tapered capsules (distance field per branch, vectorized);
- :func:`lung_fields`: two rounded lung shapes (0 bg, 1 left lung, 2 right lung; the patient's
  right lung is on the image left, as in a PA radiograph);
- :func:`disc_ellipse`: a slightly irregular ellipse (optic disc);
- kind ``retina`` (:mod:`localdisc.data.retina`): the vessel arcades of a whole fundus
  photograph, leaving the optic disc and clipped to a circular field of view.

:func:`simulate` / :func:`write_priors` turn them into prior sets for shape-guided discovery
(``localdisc simulate-shapes``). Sample ``i`` of seed ``s`` depends only on ``(s, i)``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from ..errors import ConfigError


@dataclass
class Branch:
    points: np.ndarray  # (S+1, ndim) centerline, physical units (index * spacing)
    radii: np.ndarray  # (S+1,) radius at each centerline point, physical units
    level: int


def _unit(v: np.ndarray) -> np.ndarray:
    return v / max(math.sqrt(float(v.dot(v))), 1e-12)  # np.linalg.norm is slow for tiny vectors


def _perp(v: np.ndarray, d: np.ndarray) -> np.ndarray:
    """Component of ``v`` orthogonal to unit ``d``, normalized (any ndim)."""
    return _unit(v - v.dot(d) * d)


def _rotate(d: np.ndarray, toward: np.ndarray, angle: float) -> np.ndarray:
    """Rotate unit ``d`` by ``angle`` (radians) in the plane of ``d`` and the unit ``toward`` (perp. to d)."""
    return _unit(np.cos(angle) * d + np.sin(angle) * toward)


def _random_direction(ndim: int, rng: np.random.Generator) -> np.ndarray:
    return _unit(rng.standard_normal(ndim))


def grow_tree(
    extent, rng: np.random.Generator, roots, depth: int = 5, branch_angle=(20.0, 45.0), thickness=(1.0, 4.0),
    taper: float = 0.7, tortuosity: float = 0.2, length: float = 0.3, length_taper: float = 0.75,
    asymmetry: float = 0.3, curvature: float = 0.0, avoid=(),
) -> list[Branch]:
    """Grow branching centerlines inside a box of physical size ``extent``.

    ``roots``: list of ``(point, direction)`` or ``(point, direction, turn)``; ``turn`` is the
    vector the branch bends toward at ``curvature`` radians per unit length (kept perpendicular
    while the branch turns). ``thickness`` = (thinnest, thickest) diameter; the root gets
    80-100% of the thickest, each bifurcation multiplies by ``taper**(1 -+ asymmetry)`` (the
    main child keeps more). ``length``: root branch length as a fraction of the smallest
    extent, times ``length_taper`` per level. ``avoid``: (center, radius) balls that stop a branch.
    """
    extent = np.asarray(extent, float)
    ndim = len(extent)
    step = max(1.5, float(extent.min()) / 48)
    lo_t, hi_t = float(thickness[0]), float(thickness[1])
    ext_list = extent.tolist()
    stack = []
    for root in roots:
        p, d = np.asarray(root[0], float), _unit(np.asarray(root[1], float))
        turn = _perp(np.asarray(root[2], float), d) if len(root) > 2 and root[2] is not None else _perp(rng.standard_normal(ndim), d)
        stack.append((p, d, turn, hi_t * rng.uniform(0.8, 1.0), 0, curvature))
    out: list[Branch] = []
    while stack:
        p, d, turn, t0, level, kappa = stack.pop()
        t_end = max(lo_t, t0 * taper ** (1 - asymmetry) if level + 1 < depth else t0 * taper)
        n_steps = max(2, int(round(length * extent.min() * length_taper**level * rng.uniform(0.7, 1.3) / step)))
        pts, wobble, stopped = [p.copy()], np.zeros(ndim), False
        for _ in range(n_steps):
            # AR(1) wobble perpendicular to the direction: smooth tortuosity rather than jitter.
            wobble = 0.6 * wobble + 0.4 * rng.standard_normal(ndim)
            d = _unit(d + tortuosity * (wobble - wobble.dot(d) * d) + kappa * step * turn)
            turn = _perp(turn, d)
            p = p + step * d
            pts.append(p.copy())
            if any(v < -step or v > e + step for v, e in zip(p.tolist(), ext_list)) or any(float((p - c).dot(p - c)) < r * r for c, r in avoid):
                stopped = True
                break
        pts_a = np.array(pts)
        radii = np.linspace(t0, t_end, len(pts_a)) / 2
        out.append(Branch(pts_a, np.maximum(radii, lo_t / 2), level))
        if stopped or level + 1 >= depth:
            continue
        side = _perp(rng.standard_normal(ndim), d)
        for sign, k in ((1.0, 1 - asymmetry), (-1.0, 1 + asymmetry)):
            angle = np.deg2rad(rng.uniform(*branch_angle)) * k
            child = _rotate(d, sign * side, angle)
            child_turn = turn if k < 1 else _perp(sign * side, child)
            child_kappa = kappa * (0.8 if k < 1 else 0.3)
            stack.append((p.copy(), child, child_turn, max(lo_t, t0 * taper**k), level + 1, child_kappa))
    return out


def render_branches(shape, branches: list[Branch], spacing=None) -> tuple[np.ndarray, np.ndarray]:
    """Signed distance to the tube surface and local radius, both float32 ``shape``.

    sdf(x) = min over capsule segments of |x - proj(x)| - r(proj(x)) (negative inside), computed
    per branch over its bounding box only: (pixels x segments) arrays, no Python pixel loops.
    ``radius`` holds the radius of the nearest tube (0 where no tube is near).
    """
    shape = tuple(int(s) for s in shape)
    sp = np.ones(len(shape)) if spacing is None else np.asarray(spacing, float)
    sdf = np.full(shape, np.inf, np.float32)
    rad = np.zeros(shape, np.float32)
    for b in branches:
        pts, r = b.points, b.radii
        rmax = float(r.max()) + 1.0
        lo = np.maximum(np.floor((pts.min(0) - rmax) / sp).astype(int), 0)
        hi = np.minimum(np.ceil((pts.max(0) + rmax) / sp).astype(int) + 1, shape)
        if np.any(hi <= lo):
            continue
        box = tuple(slice(a, z) for a, z in zip(lo, hi))
        axes = [np.arange(a, z, dtype=np.float32) * s for a, z, s in zip(lo, hi, sp)]
        X = [g.ravel() for g in np.meshgrid(*axes, indexing="ij")]  # nd arrays of (P,)
        a = pts[:-1].astype(np.float32)
        ab = (pts[1:] - pts[:-1]).astype(np.float32)  # (S, nd)
        den = np.maximum((ab * ab).sum(-1), 1e-12)
        rel = [X[k][:, None] - a[None, :, k] for k in range(len(shape))]  # nd x (P, S): no (P, S, nd) temporaries
        t = np.clip(sum(rel[k] * ab[:, k] for k in range(len(shape))) / den, 0.0, 1.0)  # (P, S)
        dist = np.sqrt(sum((rel[k] - t * ab[:, k]) ** 2 for k in range(len(shape))))
        rr = r[:-1].astype(np.float32) + t * (r[1:] - r[:-1]).astype(np.float32)
        sd = dist - rr
        j = sd.argmin(1)[:, None]
        best = np.take_along_axis(sd, j, 1)[:, 0].reshape(hi - lo)
        best_r = np.take_along_axis(rr, j, 1)[:, 0].reshape(hi - lo)
        cur = sdf[box]
        win = best < cur
        cur[win] = best[win]
        rad[box][win] = best_r[win]
    return sdf, rad


def _centerline(shape, branches: list[Branch], spacing=None) -> np.ndarray:
    sp = np.ones(len(shape)) if spacing is None else np.asarray(spacing, float)
    out = np.zeros(shape, bool)
    for b in branches:
        seg = np.diff(b.points, axis=0)
        n = np.maximum(np.ceil(np.linalg.norm(seg / sp, axis=1) * 2).astype(int), 1)
        pts = np.concatenate([b.points[i] + np.linspace(0, 1, k, endpoint=False)[:, None] * seg[i] for i, k in enumerate(n)] + [b.points[-1:]])
        idx = np.round(pts / sp).astype(int)
        keep = np.all((idx >= 0) & (idx < np.asarray(shape)), axis=1)
        out[tuple(idx[keep].T)] = True
    return out


def _default_roots(extent, rng, n_roots, root):
    extent = np.asarray(extent, float)
    ndim = len(extent)
    center = extent * rng.uniform(0.2, 0.8, ndim) if root is None else np.asarray(root, float)
    roots = []
    theta0 = rng.uniform(0, 2 * np.pi)
    for k in range(n_roots):
        if ndim == 2:  # evenly spread directions around the shared root, with jitter
            th = theta0 + 2 * np.pi * k / n_roots + rng.uniform(-0.3, 0.3)
            roots.append((center, np.array([np.sin(th), np.cos(th)])))
        else:
            roots.append((center, _random_direction(ndim, rng)))
    return roots


def vessel_tree(
    shape, rng: np.random.Generator, n_roots: int = 2, depth: int = 5, branch_angle=(20.0, 45.0),
    thickness=(1.0, 4.0), taper: float = 0.7, tortuosity: float = 0.2, root=None, length: float = 0.3,
    length_taper: float = 0.75, asymmetry: float = 0.3, curvature: float = 0.0, spacing=None,
) -> tuple[np.ndarray, np.ndarray]:
    """Random vessel tree -> (mask bool ``shape``, centerline bool ``shape``).

    ``n_roots`` trees start at ``root`` (index coordinates; random if None) in evenly spread
    directions; ``depth`` bifurcation levels; ``branch_angle`` degrees range; ``thickness``
    (min, max) diameter in pixels (physical units with ``spacing``); ``taper`` thickness ratio per
    level; ``tortuosity`` wobble strength; ``curvature`` radians per unit length. Works for 2D
    (H, W) and 3D (D, H, W) shapes.
    """
    sp = np.ones(len(shape)) if spacing is None else np.asarray(spacing, float)
    extent = (np.asarray(shape) - 1) * sp
    root_phys = None if root is None else np.asarray(root, float) * sp
    roots = _default_roots(extent, rng, n_roots, root_phys)
    branches = grow_tree(extent, rng, roots, depth, branch_angle, thickness, taper, tortuosity, length, length_taper, asymmetry, curvature)
    sdf, _ = render_branches(shape, branches, sp)
    line = _centerline(shape, branches, sp)
    return (sdf <= 0) | line, line  # the centerline keeps sub-pixel-thin tips connected


def vessel_tree_3d(shape, rng: np.random.Generator, **knobs) -> tuple[np.ndarray, np.ndarray]:
    """3D tubes (D, H, W) with the knobs of :func:`vessel_tree` (``spacing`` in mm per voxel)."""
    if len(shape) != 3:
        raise ConfigError(f"vessel_tree_3d needs a (D, H, W) shape, got {tuple(shape)}")
    return vessel_tree(shape, rng, **knobs)


def disc_ellipse(
    shape, rng: np.random.Generator, center=None, radius=(0.06, 0.12), elongation=(0.85, 1.2),
    angle=None, irregularity: float = 0.04,
) -> np.ndarray:
    """Slightly irregular ellipse -> bool (H, W).

    ``radius``: (min, max) mean radius as a fraction of the smaller side; ``elongation``: range of
    the vertical/horizontal axis ratio; ``angle``: rotation in degrees (random small tilt if None);
    ``irregularity``: amplitude of the low-order harmonics added to the boundary radius.
    """
    H, W = shape
    s = min(H, W)
    if center is None:
        center = (rng.uniform(0.25, 0.75) * (H - 1), rng.uniform(0.25, 0.75) * (W - 1))
    r = rng.uniform(*radius) * s
    e = rng.uniform(*elongation)
    ry, rx = r * np.sqrt(e), r / np.sqrt(e)
    ang = np.deg2rad(rng.uniform(-15, 15) if angle is None else angle)
    yy, xx = np.ogrid[:H, :W]
    dy, dx = yy - center[0], xx - center[1]
    u = dy * np.cos(ang) + dx * np.sin(ang)
    v = -dy * np.sin(ang) + dx * np.cos(ang)
    rho = np.sqrt((u / ry) ** 2 + (v / rx) ** 2)
    th = np.arctan2(u / ry, v / rx)
    bound = np.ones_like(th)
    for k in (2, 3, 4):
        bound = bound + irregularity * rng.standard_normal() / k * np.cos(k * th + rng.uniform(0, 2 * np.pi))
    return rho <= bound


def lung_fields(shape, rng: np.random.Generator, scale=(0.92, 1.05), irregularity: float = 0.015, heart=(0.12, 0.16)) -> np.ndarray:
    """Two lungs -> int64 (H, W): 0 background, 1 left lung (image right), 2 right lung (image left).

    Each lung, at relative height t (apex 0, base 1), spans a horizontal band of half-width
    ~ t**0.4 (rounded apex, widest at the base), above a domed diaphragm whose lateral end (the
    costophrenic angle) is lowest. A heart ellipse (horizontal radius range ``heart``, fraction of
    the width) cuts the medial lower parts, mostly of the left lung; ``irregularity`` bends the
    outlines with smooth sinusoids; ``scale`` varies the overall size.
    """
    from scipy.ndimage import gaussian_filter  # deferred: heavy optional dependency, loaded only when used

    H, W = shape
    y = (np.arange(H)[:, None] + 0.5) / H
    x = (np.arange(W)[None, :] + 0.5) / W
    sc = rng.uniform(*scale)
    out = np.zeros((H, W), np.int64)
    for label, side in ((2, -1), (1, 1)):
        # smooth warp of the coordinates: outlines vary without losing their lung shape
        xw = x + irregularity * np.sin(2 * np.pi * (rng.uniform(1, 2.5) * y + rng.uniform()))
        yw = y + irregularity * np.sin(2 * np.pi * (rng.uniform(1, 2.5) * x + rng.uniform()))
        a = side * (xw - 0.5)  # distance from the midline toward this lung's chest wall
        m0 = rng.uniform(0.04, 0.07)
        wmax = sc * rng.uniform(0.32, 0.37) * (1.03 if label == 2 else 1.0)
        top = 0.5 - sc * rng.uniform(0.36, 0.41)
        base = 0.5 + sc * rng.uniform(0.3, 0.36) - (0.02 if label == 2 else 0.0)  # right diaphragm sits higher
        t = np.clip((yw - top) / (base - top), 0, 1)
        center = m0 + wmax * (0.5 + 0.06 * t)
        half = 0.5 * wmax * t**0.4
        u = np.clip((a - center) / np.maximum(half, 1e-6), -1, 1)
        dome = sc * rng.uniform(0.05, 0.09) * (1 - u**2) * (u > -0.6) + 0.03 * sc * (u <= -0.6) * (1 - u**2)
        inside = (yw >= top) & (yw <= base - dome) & (np.abs(a - center) <= half)
        out[inside] = label
    hx, hy = 0.5 + rng.uniform(0.03, 0.07), 0.5 + sc * rng.uniform(0.15, 0.2)
    hrx, hry = rng.uniform(*heart), rng.uniform(0.14, 0.18) * sc
    out[((y - hy) / hry) ** 2 + ((x - hx) / hrx) ** 2 <= 1] = 0
    # round the corners: blur each label and threshold at one half
    sig = 0.012 * min(H, W)
    res = np.zeros_like(out)
    for label in (1, 2):
        res[gaussian_filter((out == label).astype(np.float32), sig) > 0.5] = label
    return res
