"""Models-Genesis-style restoration baseline (docs/method.md): distortions and method."""

from .distortions import bezier_intensity, box_mask, distort, local_pixel_shuffle, paint
from .method import Genesis, GenesisConfig

__all__ = ["Genesis", "GenesisConfig", "bezier_intensity", "box_mask", "distort", "local_pixel_shuffle", "paint"]
