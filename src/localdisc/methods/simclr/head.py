"""Global projection head and the encoder-only forward used by the instance-discrimination methods.

:func:`encode` runs only the U-Net encoder: x (B, C, *S) -> list of maps, scale i: (B, C_i, *S/2^i).
:func:`pooled` is the global average of the deepest map: (B, C_last).
:class:`ProjectionHead` is SimCLR's MLP g(h) = W2 ReLU(BN(W1 h)): (B, C_last) -> (B, out_dim).
"""

from __future__ import annotations

import torch
from torch import nn

from ...nets import UNet


def encode(backbone: UNet, x: torch.Tensor) -> list[torch.Tensor]:
    """Encoder maps of every scale without running the decoder (same ops as ``forward_features``)."""
    maps, h = [], x
    for i, block in enumerate(backbone.encoder):
        h = block(backbone._pool(h) if i > 0 else h)
        maps.append(h)
    return maps


def pooled(feature_map: torch.Tensor) -> torch.Tensor:
    """(B, C, *S) -> (B, C) global average."""
    return feature_map.flatten(2).mean(dim=2)


class ProjectionHead(nn.Sequential):
    def __init__(self, in_dim: int, hidden: int = 256, out_dim: int = 64):
        super().__init__(nn.Linear(in_dim, hidden, bias=False), nn.BatchNorm1d(hidden), nn.ReLU(inplace=True), nn.Linear(hidden, out_dim))


__all__ = ["encode", "pooled", "ProjectionHead"]
