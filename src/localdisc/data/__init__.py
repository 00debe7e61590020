"""Data layer: readers, dataset layouts, splits, synthetic generators, torch datasets."""

from .io import read_image, read_mask, read_spacing

__all__ = ["read_image", "read_mask", "read_spacing"]
