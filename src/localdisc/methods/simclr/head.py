"""Global projection head and the encoder-only forward used by the instance-discrimination methods.

:func:`encode` runs only the U-Net encoder: x (B, C, *S) -> list of maps, scale i: (B, C_i, *S/2^i).
:func:`pooled` is the global average of the deepest map: (B, C_last).
:class:`ProjectionHead` is SimCLR's MLP g(h) = W2 ReLU(Norm(W1 h)): (B, C_last) -> (B, out_dim),
where Norm follows the backbone's ``norm``: BatchNorm1d for "batch" (SimCLR's choice), else a
per-sample GroupNorm (see :func:`vector_norm`).
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


def vector_norm(channels: int, kind: str = "batch") -> nn.Module:
    """Normalization of (B, channels) vectors named like ``UNetConfig.norm``.

    "batch": BatchNorm1d (statistics over the batch, so under CPU/gloo DDP over the process's
    share only); "group": GroupNorm(min(8, C), C); "instance": a vector has no spatial extent,
    so each sample is normalized over all its channels (GroupNorm(1, C), i.e. LayerNorm).
    Both per-sample kinds make the head independent of the batch composition.
    """
    if kind == "batch":
        return nn.BatchNorm1d(channels)
    if kind == "group":
        return nn.GroupNorm(min(8, channels), channels)
    if kind == "instance":
        return nn.GroupNorm(1, channels)
    raise ValueError(f"unknown norm {kind!r}; valid: batch, instance, group")


class ProjectionHead(nn.Sequential):
    def __init__(self, in_dim: int, hidden: int = 256, out_dim: int = 64, norm: str = "batch"):
        super().__init__(nn.Linear(in_dim, hidden, bias=False), vector_norm(hidden, norm), nn.ReLU(inplace=True), nn.Linear(hidden, out_dim))


__all__ = ["encode", "pooled", "ProjectionHead", "vector_norm"]
