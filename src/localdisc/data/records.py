"""A dataset is a list of :class:`Sample` records; every reader/layout produces them.

``resolve_source(spec)`` turns what a user types (a folder, a manifest CSV, or a named
layout such as ``ph2:/path`` / ``drive:/path`` / ``synthetic-fundus``) into samples.
Images and masks are read lazily through :func:`load_sample_image` / :func:`load_sample_mask`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
from PIL import Image

from ..errors import DataError
from .files import require_file
from .io import read_image, read_mask, read_mask_values


@dataclass
class Sample:
    id: str
    image: str
    mask: str | None = None
    fov: str | None = None
    split: str | None = None  # "train" | "val" | "test" | None (unassigned)
    spacing: tuple[float, ...] | None = None  # mm per pixel/voxel, spatial order
    landmarks: dict[str, tuple[float, ...]] | None = None  # name -> (row, col[, ...]) in pixels
    extra: dict[str, Any] = field(default_factory=dict)  # layout-specific (e.g. mask composition)


def load_sample_image(sample: Sample, channels: int | None = None) -> np.ndarray:
    return read_image(sample.image, channels)


def load_sample_mask(sample: Sample, num_classes: int | None = None) -> np.ndarray | None:
    """Class-index mask (int64, *spatial) or None when the sample has no label."""
    return load_sample_mask_values(sample, num_classes)[0]


def load_sample_mask_values(sample: Sample, num_classes: int | None = None) -> tuple[np.ndarray | None, list[int]]:
    """(class-index mask or None, the values the mask file itself holds before remapping, for
    messages: a 0/255 file gives classes [0, 1] and values [0, 255]; composed masks hold their
    classes)."""

    composer = sample.extra.get("mask_composer")
    if composer is not None:
        mask = compose_mask(sample, num_classes)
        return mask, np.unique(mask).tolist()
    if sample.mask is None:
        return None, []
    return read_mask_values(sample.mask, values=sample.extra.get("mask_values", "auto"), num_classes=num_classes)


def load_sample_fov(sample: Sample) -> np.ndarray | None:
    if sample.extra.get("fov_from_image"):  # layouts without FOV files (STARE, CHASE_DB1)

        return derive_fov(sample)
    return None if sample.fov is None else read_mask(sample.fov, values="binary").astype(bool)


# ---------------------------------------------------------------- masks built from parts (CXR), derived FOV (STARE, CHASE_DB1)
_MASK_CACHE: dict[tuple[str, tuple[str, ...]], np.ndarray] = {}  # per process, never on disk


def _compose_cxr(sample: Sample) -> np.ndarray:
    h, w = sample.extra["size"]
    names = sample.extra["structures"]
    out = np.zeros((h, w), np.int64)
    for cls, name in enumerate(names, start=1):  # later structures overwrite earlier ones
        for sname, crop_path, t, l, cw, ch in sample.extra["crops"]:
            if sname != name:
                continue

            require_file(crop_path, "a mask crop image")
            try:
                with Image.open(crop_path) as im:
                    crop = np.asarray(im.convert("RGB")).max(axis=-1) > 0
            except OSError as e:
                raise DataError(f"{crop_path}: unreadable mask crop ({e})") from e
            if crop.shape != (ch, cw) or t < 0 or l < 0 or t + ch > h or l + cw > w:
                raise DataError(f"{crop_path}: crop of size {crop.shape} at (top {t}, left {l}) does not fit box {ch}x{cw} in image {h}x{w}")
            out[t : t + ch, l : l + cw][crop] = cls
    return out


COMPOSERS = {"cxr": _compose_cxr}


def compose_mask(sample: Sample, num_classes: int | None = None) -> np.ndarray:
    """Full-size class map (int64 H x W) for samples whose mask is built from parts."""
    kind = sample.extra["mask_composer"]
    if kind not in COMPOSERS:
        raise DataError(f"{sample.image}: unknown mask composer {kind!r}")
    n = len(sample.extra.get("class_names", ())) or None
    if num_classes is not None and n is not None and num_classes < n:
        raise DataError(f"{sample.image}: mask has {n} classes {sample.extra['class_names']}, but only {num_classes} are configured")
    key = (sample.image, tuple(sample.extra.get("structures", ())))
    if key not in _MASK_CACHE:
        _MASK_CACHE[key] = COMPOSERS[kind](sample)
    return _MASK_CACHE[key].copy()


def derive_fov(sample: Sample, threshold: float = 0.1) -> np.ndarray:
    """Field of view for sets that ship none (STARE, CHASE_DB1): bool (H, W).

    The camera aperture is a bright disc on a near-black background: threshold the red
    channel (brightest inside the eye) at ``threshold`` of full scale, fill holes, keep the
    largest connected component, then erode by 2 pixels to drop the JPEG-noisy rim.
    """
    from scipy import ndimage  # deferred: heavy optional dependency, loaded only when used

    img = read_image(sample.image)
    fov = ndimage.binary_fill_holes(img[0] > threshold)
    lab, n = ndimage.label(fov)
    if n == 0:
        return np.ones(img.shape[1:], bool)  # no dark border: treat the whole image as FOV
    if n > 1:
        fov = lab == (np.argmax(np.bincount(lab.ravel())[1:]) + 1)
    return ndimage.binary_erosion(fov, iterations=2)
