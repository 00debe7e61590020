"""Torch datasets over :class:`Sample` lists: resized, cached in memory, channel-checked.

Items are dicts: ``image`` float32 (C, *size) in [0, 1]; with ``with_masks``: ``mask`` int64
(*size) and ``fov`` bool (*size, all True when the sample has none); always ``index``.
Resizing uses antialiased (bi|tri)linear interpolation for images and nearest for labels.
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.data import Dataset

from ..errors import DataError
from .records import Sample, load_sample_fov, load_sample_image, load_sample_mask_values


def resize_image(arr: torch.Tensor, size: Sequence[int]) -> torch.Tensor:
    """(C, *S) float -> (C, *size)."""
    if tuple(arr.shape[1:]) == tuple(size):
        return arr
    mode = "bilinear" if arr.dim() == 3 else "trilinear"
    antialias = arr.dim() == 3
    return F.interpolate(arr[None], size=tuple(size), mode=mode, align_corners=False, antialias=antialias)[0]


def resize_labels(arr: torch.Tensor, size: Sequence[int]) -> torch.Tensor:
    """(*S) integer/bool -> (*size), nearest neighbour."""
    if tuple(arr.shape) == tuple(size):
        return arr
    out = F.interpolate(arr[None, None].float(), size=tuple(size), mode="nearest-exact")[0, 0]
    return out.to(arr.dtype)


class ImageDataset(Dataset):
    def __init__(
        self,
        samples: list[Sample],
        size: Sequence[int] | None,
        channels: int | None,
        with_masks: bool = False,
        num_classes: int | None = None,
        cache: bool = True,
    ):
        if not samples:
            raise DataError("no images to load (empty sample list)")
        self.samples = samples
        self.size = tuple(size) if size else None
        self.channels = channels
        self.with_masks = with_masks
        self.num_classes = num_classes
        self._cache: dict[int, dict[str, torch.Tensor]] | None = {} if cache else None
        self.mask_values: dict[int, list[int]] = {}  # class values found in each loaded mask (at full size)
        self.raw_mask_values: dict[int, list[int]] = {}  # the values each mask FILE holds, before remapping (for messages)

    def __len__(self) -> int:
        return len(self.samples)

    def _load(self, i: int) -> dict[str, torch.Tensor]:
        s = self.samples[i]
        image = torch.from_numpy(load_sample_image(s, self.channels))
        item: dict[str, torch.Tensor] = {}
        if self.with_masks:
            mask, raw_values = load_sample_mask_values(s, self.num_classes)
            if mask is None:
                raise DataError(f"{s.image}: no mask for this image, but a labeled dataset was requested")
            self.mask_values[i] = np.unique(mask).tolist()
            self.raw_mask_values[i] = raw_values
            if tuple(mask.shape) != tuple(image.shape[1:]):
                raise DataError(f"{s.mask or s.image}: mask size {tuple(mask.shape)} differs from image size {tuple(image.shape[1:])}")
            fov = load_sample_fov(s)
            if fov is not None and tuple(fov.shape) != tuple(image.shape[1:]):
                raise DataError(f"{s.fov}: field-of-view mask size {tuple(fov.shape)} differs from image size {tuple(image.shape[1:])}")
            fov_t = torch.from_numpy(fov) if fov is not None else torch.ones(image.shape[1:], dtype=torch.bool)
            if self.size:
                item["mask"] = resize_labels(torch.from_numpy(mask), self.size)
                item["fov"] = resize_labels(fov_t, self.size)
            else:
                item["mask"], item["fov"] = torch.from_numpy(mask), fov_t
        item["image"] = resize_image(image, self.size) if self.size else image
        return item

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        if self._cache is not None and i in self._cache:
            item = self._cache[i]
        else:
            item = self._load(i)
            if self._cache is not None:
                self._cache[i] = item
        return {**item, "index": torch.tensor(i)}


def require_foreground(datasets: Sequence[ImageDataset]) -> None:
    """Refuse labeled data whose every mask is background only (all zeros): training on it
    learns to predict nothing and reports no error. Checked over all ``datasets`` together (a
    validation split of healthy cases is fine when the training masks hold lesions); loads each
    mask once (cached datasets keep it). The message names the first mask's folder and file."""

    masks = []
    for ds in datasets:
        for i in range(len(ds)):
            if i not in ds.mask_values:
                ds[i]
            if any(v != 0 for v in ds.mask_values[i]):
                return
            masks.append(Path(ds.samples[i].mask or ds.samples[i].image))
    if masks:
        raise DataError(f"{masks[0].parent}: all {len(masks)} labeled masks are empty (background only), e.g. {masks[0].name}; "
                        "check that the mask files hold the labels (foreground non-zero) and that they are paired with the right images")


def stack_items(items: list[dict[str, torch.Tensor]]) -> dict[str, torch.Tensor]:
    return {k: torch.stack([it[k] for it in items]) for k in items[0]}


def num_channels_of(samples: list[Sample]) -> int:
    """Channel count of the first image (1 gray, 3 color) for defaulting ``in_channels``."""
    return int(np.clip(load_sample_image(samples[0]).shape[0], 1, 3))
