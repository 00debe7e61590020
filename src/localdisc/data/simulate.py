"""Prior masks on demand: ``simulate(kind, n, shape)`` dispatches to the shape generators
(:mod:`.shapes` vessel trees, lungs, optic disc; :mod:`.retina` fundus vessels) and
``write_priors`` saves them as PNG (2D) or NIfTI (3D) files."""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
from PIL import Image

from ..errors import ConfigError
from .retina import retina_vessel_mask
from .shapes import disc_ellipse, lung_fields, vessel_tree, vessel_tree_3d

KINDS = ("vessels", "retina", "lungs", "disc", "tubes3d")


def _one(kind: str, shape, rng: np.random.Generator, **knobs) -> np.ndarray:
    if kind == "vessels":
        if len(shape) != 2:
            raise ConfigError(f"kind 'vessels' needs a 2-D size, got {tuple(shape)} (use tubes3d for volumes)")
        return vessel_tree(shape, rng, **knobs)[0]
    if kind == "retina":
        return retina_vessel_mask(shape, rng, **knobs)
    if kind == "tubes3d":
        return vessel_tree_3d(shape, rng, **knobs)[0]
    if kind == "lungs":
        return lung_fields(shape, rng, **knobs)
    if kind == "disc":
        return disc_ellipse(shape, rng, **knobs)
    raise ConfigError(f"unknown shape kind {kind!r}; choose one of {', '.join(KINDS)}")


def simulate(kind: str, n: int, shape, seed: int = 0, **knobs) -> list[np.ndarray]:
    """``n`` masks of ``kind`` (bool, or int64 labels for lungs); mask i depends only on (seed, i)."""
    shape = tuple(int(s) for s in shape)
    if n < 1 or any(s < 8 for s in shape):
        raise ConfigError(f"simulate needs n >= 1 and every size >= 8 (got n={n}, size={shape})")
    return [_one(kind, shape, np.random.default_rng([seed, i]), **knobs) for i in range(n)]


def save_nifti(array: np.ndarray, path: Path, spacing=None) -> None:
    """(D, H, W) array -> NIfTI (x, y, z order, zooms = spacing reversed); byte-identical for equal
    input (gzip with mtime 0, unlike nibabel's own writer)."""
    import nibabel as nib  # deferred: heavy optional dependency, loaded only when used

    spacing = (1.0,) * array.ndim if spacing is None else tuple(float(s) for s in spacing)
    img = nib.Nifti1Image(np.ascontiguousarray(np.transpose(array, (2, 1, 0))), np.diag(list(spacing[::-1]) + [1.0]))
    img.header.set_zooms(spacing[::-1])
    data = img.to_bytes()
    path.write_bytes(gzip.compress(data, mtime=0) if path.name.endswith(".gz") else data)


def write_priors(kind: str, n: int, shape, out_dir, seed: int = 0, **knobs) -> list[Path]:
    """Write ``n`` prior masks as 0/255 PNGs (``.nii.gz`` for 3D kinds) into ``out_dir``."""

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = []
    for i, m in enumerate(simulate(kind, n, shape, seed, **knobs)):
        arr = ((m > 0) * 255).astype(np.uint8)
        if arr.ndim == 2:
            p = out / f"{kind}_{i:04d}.png"
            Image.fromarray(arr).save(p)
        else:
            p = out / f"{kind}_{i:04d}.nii.gz"
            save_nifti(arr, p, knobs.get("spacing"))
        paths.append(p)
    return paths
