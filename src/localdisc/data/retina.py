"""Fundus anatomy: field of view, optic disc, fovea and the retinal vessel arcades.

Shared by the shape simulator (kind ``retina``: vessel masks of a whole fundus photograph, the
prior set for shape-guided vessel discovery on fundus images) and the synthetic fundus
photographs of :mod:`localdisc.data.synthetic`, so that both draw the same anatomy.

Why a separate prior kind: shape guidance only converges to the true vessels when real vessel
masks are indistinguishable from the priors to the discriminator. Generic trees
(:func:`~localdisc.data.shapes.vessel_tree`) fill the whole canvas from a random root; fundus
vessels leave the optic disc in four arcades, avoid the fovea and stop at the circular field of
view, and a small discriminator tells the two apart (``benchmarks/prior_gap.py``).

All coordinates are (row, col) pixel indices of an (H, W) image.
"""

from __future__ import annotations

import numpy as np

from ..errors import ConfigError
from .shapes import disc_ellipse, grow_tree, render_branches


def fundus_layout(shape, rng: np.random.Generator) -> dict:
    """Random eye geometry for an (H, W) photograph.

    Returns dict: fov bool (H, W), r2 (H, W) squared radius over the FOV radius, R (FOV radius),
    eye "left" | "right", temporal (unit row/col vector away from the nose), dd (disc diameter),
    disc_c and fovea_c (row, col), disc bool (H, W). The disc sits nasally (image right for a
    right eye), the fovea ~2.5 disc diameters temporal to it.
    """
    H, W = int(shape[0]), int(shape[1])
    s = min(H, W)
    yy, xx = np.mgrid[0:H, 0:W].astype(np.float32)
    cy, cx = (H - 1) / 2, (W - 1) / 2
    R = 0.48 * s * rng.uniform(0.96, 1.0)
    r2 = ((yy - cy) ** 2 + (xx - cx) ** 2) / R**2
    eye = "right" if rng.random() < 0.5 else "left"
    nasal = 1.0 if eye == "right" else -1.0  # image column direction toward the nose
    dd = s * rng.uniform(0.12, 0.145)
    disc_c = np.array([cy + rng.uniform(-0.04, 0.04) * s, cx + nasal * 1.25 * dd * rng.uniform(0.95, 1.1)])
    fovea_c = disc_c + np.array([rng.uniform(0.05, 0.2) * dd, -nasal * 2.5 * dd * rng.uniform(0.93, 1.07)])
    disc = disc_ellipse((H, W), rng, center=disc_c, radius=(dd / 2 / s, dd / 2 / s), elongation=(1.0, 1.2), angle=rng.uniform(-10, 10))
    return {"fov": r2 <= 1.0, "r2": r2, "R": R, "eye": eye, "temporal": np.array([0.0, -nasal]), "dd": dd, "disc_c": disc_c, "fovea_c": fovea_c, "disc": disc}


def arcade_roots(disc_c, temporal, rng: np.random.Generator) -> dict[str, list]:
    """Main arcades from the disc: superior/inferior x temporal/nasal, each an artery and a vein.
    Temporal arcades bend toward the macula; nasal ones run straighter.

    Returns {"artery" | "vein": [(start, direction, bend direction, bend strength), ...]}."""
    roots = {"artery": [], "vein": []}
    up, down = np.array([-1.0, 0.0]), np.array([1.0, 0.0])
    for vert in (up, down):
        for kind in ("artery", "vein"):
            tilt = rng.uniform(0.25, 0.55)
            roots[kind].append((disc_c.copy(), vert * np.cos(tilt) + temporal * np.sin(tilt), temporal, 1.0))
            tilt = rng.uniform(0.3, 0.7)
            roots[kind].append((disc_c.copy(), vert * np.cos(tilt) - temporal * np.sin(tilt), -temporal, 0.25))
    return roots


def retinal_vessels(shape, rng: np.random.Generator, layout: dict) -> tuple[np.ndarray, np.ndarray]:
    """Vessel trees of one eye -> (vessels bool (H, W) inside the FOV, contrast float32 (H, W)).

    Veins are thicker and darker than arteries; branches stop at the foveal avascular zone.
    ``contrast`` is the antialiased absorption profile (0 outside vessels) the photograph uses.
    """
    H, W = int(shape[0]), int(shape[1])
    s = min(H, W)
    dd, disc_c = layout["dd"], layout["disc_c"]
    sdf, contrast = np.full((H, W), np.inf, np.float32), np.zeros((H, W), np.float32)
    avoid = [(layout["fovea_c"], 0.45 * dd)]
    for kind, roots in arcade_roots(disc_c, layout["temporal"], rng).items():
        tmax = s * (0.021 if kind == "vein" else 0.016) * rng.uniform(0.9, 1.1)
        branches = []
        for p, d, turn, bend in roots:
            branches += grow_tree(
                (H - 1, W - 1), rng, [(p, d, turn)], depth=5, branch_angle=(25, 55), thickness=(max(1.0, s / 256), tmax),
                taper=0.72, tortuosity=0.12 if kind == "artery" else 0.2, length=0.26, length_taper=0.72, asymmetry=0.45,
                curvature=bend / (1.9 * dd), avoid=avoid,
            )
        k_sdf, k_rad = render_branches((H, W), branches)
        # darker for thicker vessels (more blood along the ray)
        prof = np.clip(0.5 - k_sdf, 0.0, 1.0) * (0.55 + 0.45 * np.sqrt(np.clip(k_rad / (tmax / 2), 0, 1)))
        contrast = np.maximum(contrast, prof * (0.62 if kind == "vein" else 0.45))
        sdf = np.minimum(sdf, k_sdf)
    return (sdf <= 0) & layout["fov"], contrast


def retina_vessel_mask(shape, rng: np.random.Generator) -> np.ndarray:
    """Vessel mask of a whole fundus photograph (bool (H, W)): the ``retina`` prior kind."""
    if len(shape) != 2:
        raise ConfigError(f"kind 'retina' needs a 2-D size, got {tuple(shape)}")
    return retinal_vessels(shape, rng, fundus_layout(shape, rng))[0]
