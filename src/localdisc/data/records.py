"""A dataset is a list of :class:`Sample` records; every reader/layout produces them.

``resolve_source(spec)`` turns what a user types (a folder, a manifest CSV, or a named
layout such as ``ph2:/path`` / ``drive:/path`` / ``synthetic-fundus``) into samples.
Images and masks are read lazily through :func:`load_sample_image` / :func:`load_sample_mask`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np


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
    from .io import read_image

    return read_image(sample.image, channels)


def load_sample_mask(sample: Sample, num_classes: int | None = None) -> np.ndarray | None:
    """Class-index mask (int64, *spatial) or None when the sample has no label."""
    return load_sample_mask_values(sample, num_classes)[0]


def load_sample_mask_values(sample: Sample, num_classes: int | None = None) -> tuple[np.ndarray | None, list[int]]:
    """(class-index mask or None, the values the mask file itself holds before remapping, for
    messages: a 0/255 file gives classes [0, 1] and values [0, 255]; composed masks hold their
    classes)."""
    from .io import read_mask_values

    composer = sample.extra.get("mask_composer")
    if composer is not None:
        from .layouts import compose_mask

        mask = compose_mask(sample, num_classes)
        return mask, np.unique(mask).tolist()
    if sample.mask is None:
        return None, []
    return read_mask_values(sample.mask, values=sample.extra.get("mask_values", "auto"), num_classes=num_classes)


def load_sample_fov(sample: Sample) -> np.ndarray | None:
    from .io import read_mask

    if sample.extra.get("fov_from_image"):  # layouts without FOV files (STARE, CHASE_DB1)
        from .layouts import derive_fov

        return derive_fov(sample)
    return None if sample.fov is None else read_mask(sample.fov, values="binary").astype(bool)
