"""DenseCL dense projection head: features average-pooled to a G^d grid (as DenseCL's 7x7
backbone output; also keeps full-resolution 3D trunks affordable), then conv1x1 - ReLU -
conv1x1 per cell: (B, C, *S) -> (B, out_dim, G^d) (flattened locations, unnormalized)."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ...nets import conv_nd


class DenseProjectionHead(nn.Module):
    def __init__(self, spatial_dims: int, in_dim: int, hidden: int = 128, out_dim: int = 64, grid: int = 8):
        super().__init__()
        self.spatial_dims, self.grid = spatial_dims, grid
        self.mlp = nn.Sequential(conv_nd(spatial_dims, in_dim, hidden, 1), nn.ReLU(inplace=True), conv_nd(spatial_dims, hidden, out_dim, 1))

    def pool(self, maps: torch.Tensor) -> torch.Tensor:
        """(B, C, *S) -> (B, C, *g) adaptive average pooling, g = G capped at the map size."""
        size = tuple(min(self.grid, s) for s in maps.shape[2:])
        pool = F.adaptive_avg_pool2d if self.spatial_dims == 2 else F.adaptive_avg_pool3d
        return pool(maps, size)

    def forward(self, maps: torch.Tensor) -> torch.Tensor:
        return self.mlp(self.pool(maps)).flatten(2)


__all__ = ["DenseProjectionHead"]
