"""The resolution localdisc trains at when ``--image-size`` is not given: the data's own.

Thin structures need their pixels (a retinal vessel is 1-3 px wide at 565 px and vanishes at
256), so by default images are not shrunk to a fixed size: the training size is the median
size of the training images (per axis), scaled down only as far as needed to keep the longer
side within :data:`MAX_SIDE` (2D) or :data:`MAX_SIDE_3D` (volumes), never upsampled, and
rounded down to a multiple of the U-Net's total stride. With ``--spacing`` (volumes), the size
is the median field of view (voxels x mm per voxel) divided by that spacing: every volume is
then resampled to about that voxel size. Large images train on patches (``--patch-size``),
predicted by a sliding window at the same resolution.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np
from PIL import Image

from ..errors import ConfigError, DataError
from .io import is_volume, read_geometry, read_image, read_volume

MAX_SIDE = 1024  # 2D: longer side at most this many pixels (memory of whole-image prediction)
MAX_SIDE_3D = 256  # volumes: voxels per axis
SAMPLED = 200  # headers read to estimate the median (evenly spread over the dataset)


def image_shape(path: str | Path) -> tuple[tuple[int, ...], tuple[float, ...] | None]:
    """Spatial shape in localdisc's order ((H, W), or (D, H, W) of the RAS-reoriented volume)
    and the spacing in mm per pixel (None if unknown), from the header where possible."""

    p = Path(str(path))
    if not is_volume(path):
        try:
            with Image.open(p) as im:
                return (im.size[1], im.size[0]), None
        except Exception:
            return tuple(read_image(p).shape[1:]), None
    geom = read_geometry(path)  # NIfTI: header only
    if geom is not None:
        return geom.shape, geom.spacing
    return tuple(read_volume(path)[0].shape), None  # .npy


def check_image_size(image_size: Sequence[int], path: str, what: str = "--image-size") -> None:
    """``image_size`` has one number per spatial axis of the data (2 for images, 3 for volumes)."""

    dims = len(image_shape(path)[0])
    if image_size and len(image_size) != dims:
        raise ConfigError(f"{what} {' '.join(map(str, image_size))} has {len(image_size)} numbers, but {path} is {dims}-D: give {dims}")


def auto_image_size(images: Sequence[str], spacing: Sequence[float] = (), multiple: int = 16) -> tuple[int, ...]:
    """The training size for these image files (see the module doc)."""
    if not images:
        raise DataError("no images to choose an image size from")
    step = max(1, len(images) // SAMPLED)
    shapes, spacings = [], []
    for path in list(images)[::step]:
        shape, sp = image_shape(path)
        shapes.append(shape)
        spacings.append(sp)
    dims = {len(s) for s in shapes}
    if len(dims) != 1:
        raise DataError(f"{images[0]}: the data mixes 2D images and 3D volumes; give --image-size")
    shapes_arr = np.array(shapes, float)
    if spacing:
        if len(spacing) != shapes_arr.shape[1]:
            raise DataError(f"--spacing needs {shapes_arr.shape[1]} numbers for this data, got {len(spacing)}")
        if any(sp is None for sp in spacings):
            raise DataError(f"{images[0]}: --spacing needs images with a known voxel spacing (NIfTI or DICOM)")
        shapes_arr = shapes_arr * np.array(spacings, float) / np.array(spacing, float)
    median = np.median(shapes_arr, axis=0)
    cap = MAX_SIDE if shapes_arr.shape[1] == 2 else MAX_SIDE_3D
    scale = min(1.0, cap / median.max())
    size = np.maximum(multiple, np.floor(median * scale / multiple) * multiple)
    return tuple(int(s) for s in size)
