"""Dimension-agnostic layers: ``spatial_dims`` 1, 2 or 3 picks the torch class."""

from __future__ import annotations

from torch import nn


def conv_nd(spatial_dims: int, cin: int, cout: int, kernel_size: int = 3, bias: bool = True) -> nn.Module:
    conv = {1: nn.Conv1d, 2: nn.Conv2d, 3: nn.Conv3d}[spatial_dims]
    return conv(cin, cout, kernel_size, padding=kernel_size // 2, bias=bias)


def norm_nd(spatial_dims: int, channels: int, kind: str = "batch") -> nn.Module:
    if kind == "batch":
        return {1: nn.BatchNorm1d, 2: nn.BatchNorm2d, 3: nn.BatchNorm3d}[spatial_dims](channels)
    if kind == "instance":
        return {1: nn.InstanceNorm1d, 2: nn.InstanceNorm2d, 3: nn.InstanceNorm3d}[spatial_dims](channels, affine=True)
    if kind == "group":
        return nn.GroupNorm(min(8, channels), channels)
    raise ValueError(f"unknown norm {kind!r}; valid: batch, instance, group")
