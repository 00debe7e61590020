"""Classical baselines without labels or training: what a user gets without localdisc.

Segmentation (binary maps of a dark structure, e.g. lungs on a chest X-ray, vessels on a
fundus photograph):

- :func:`otsu_dark`: pixels darker than Otsu's threshold t* = argmax_t w_0(t) w_1(t) (mu_0(t) - mu_1(t))^2,
  the split of the grey-level histogram that maximizes the between-class variance;
- :func:`dark_detail`: background-corrected darkness max(0, (1 - g) - G_s * (1 - g)), thin dark
  lines on a smooth background (G_s: a Gaussian of width s = max(2, 2% of the image side));
- :func:`vesselness`: Frangi's multi-scale Hessian filter for dark tubes (``black_ridges``);
- :func:`vessel_baselines`: Otsu on the dark detail, and Frangi thresholded by Otsu, on the
  green channel (where fundus vessels have the most contrast), inside a field of view;
- :func:`whole_image`: everything called structure, the floor a method must clear
  (Dice 2f / (1 + f) for a structure covering the fraction f of the image).

Landmarks (one annotated support image, points (L, 2) as (row, col)):

- :func:`copy_landmarks`: the support's positions copied at the same relative place;
- :func:`ncc_landmarks`: each point's raw-intensity patch matched by normalized cross-correlation.

Images are float arrays in [0, 1]: grey (H, W) or (C, H, W) as noted.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from .landmarks import normalized_cross_correlation_locate, to_orig_coords


def otsu_threshold(values: np.ndarray) -> float:
    """Otsu's threshold of a set of grey values (any shape)."""
    from skimage.filters import threshold_otsu  # deferred: heavy optional dependency, loaded only when used

    return float(threshold_otsu(np.asarray(values, dtype=np.float64).ravel()))


def otsu_dark(grey: np.ndarray, fov: np.ndarray | None = None) -> np.ndarray:
    """(H, W) bool: pixels darker than Otsu's threshold (computed inside ``fov`` when given;
    False outside it). Lungs hold air and are dark on a chest X-ray."""
    keep = np.ones(grey.shape, bool) if fov is None else fov.astype(bool)
    return (grey < otsu_threshold(grey[keep])) & keep


def green_channel(image: np.ndarray) -> np.ndarray:
    """(C, H, W) -> (H, W): the green channel of an RGB image, else the first channel."""
    return image[1] if image.shape[0] == 3 else image[0]


def dark_detail(grey: np.ndarray, sigma: float | None = None) -> np.ndarray:
    """(H, W) float >= 0: darkness above the local background (see the module docstring)."""
    from scipy.ndimage import gaussian_filter  # deferred: heavy optional dependency, loaded only when used

    inv = 1.0 - grey
    background = gaussian_filter(inv, sigma=sigma or max(2.0, 0.02 * max(grey.shape)))
    return np.clip(inv - background, 0, None)


def vesselness(grey: np.ndarray, fov: np.ndarray | None = None, scales: int = 4) -> np.ndarray:
    """(H, W) Frangi vesselness of dark tubes, widths sigma from 1 to max(2, 0.8% of the image
    side) in ``scales`` steps; 0 outside ``fov``."""
    from skimage.filters import frangi  # deferred: heavy optional dependency, loaded only when used

    response = frangi(grey, sigmas=np.linspace(1, max(2.0, 0.008 * max(grey.shape)), scales), black_ridges=True)
    return response if fov is None else np.where(fov, response, 0.0)


def vessel_baselines(image: np.ndarray, fov: np.ndarray) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """image (C, H, W), fov (H, W) bool -> {"otsu": (binary, score), "frangi": (binary, score)},
    binaries (H, W) bool inside ``fov``, scores (H, W) float (for an AUC)."""
    fov = fov.astype(bool)
    g = green_channel(image)
    dark = dark_detail(g)
    otsu = (dark > otsu_threshold(dark[fov])) & fov
    fr = vesselness(g, fov)
    frangi_bin = (fr > otsu_threshold(fr[fov])) & fov if fr[fov].max() > 0 else np.zeros_like(fov)
    return {"otsu": (otsu, dark), "frangi": (frangi_bin, fr)}


def whole_image(shape: Sequence[int]) -> np.ndarray:
    """Everything is the structure: a (*shape) bool map of ones."""
    return np.ones(tuple(shape), bool)


def copy_landmarks(support_points: np.ndarray, query_size: Sequence[int], grid: Sequence[int]) -> np.ndarray:
    """support_points (L, 2) on the common ``grid`` -> the same relative place in a query of
    ``query_size`` (its original pixels)."""
    return to_orig_coords(np.asarray(support_points, float), query_size, grid)


def ncc_landmarks(support: np.ndarray, support_points: np.ndarray, query: np.ndarray, query_size: Sequence[int], half: int = 16) -> np.ndarray:
    """support, query (H, W) grey images on a common grid; support_points (L, 2) on that grid ->
    (L, 2) best NCC matches of the (2 half + 1)^2 patches, in the query's original pixels."""
    found = np.array([normalized_cross_correlation_locate(support, pt, query, half) for pt in support_points])
    return to_orig_coords(found, query_size, query.shape)
