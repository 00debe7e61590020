"""LD heads on the U-Net decoder trunk (docs/method.md), dimension-agnostic.

- :class:`EmbeddingHead`: conv3-BN-ReLU-conv3 to D, then L2 norm per pixel: v (B, D, *S).
- :class:`ClusterHead`: conv3-BN-ReLU-conv3 to K, sigmoid, then divided by the sum over K
  (L1 normalization, not softmax, as in the reference): a (B, K, *S), a >= 0, sum_k a = 1.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ...nets import conv_nd, norm_nd


class _Head(nn.Sequential):
    def __init__(self, spatial_dims: int, cin: int, cout: int, hidden: int | None = None, norm: str = "batch"):
        hidden = hidden or cin
        super().__init__(
            conv_nd(spatial_dims, cin, hidden, 3, bias=False),
            norm_nd(spatial_dims, hidden, norm),
            nn.ReLU(inplace=True),
            conv_nd(spatial_dims, hidden, cout, 3),
        )


class EmbeddingHead(_Head):
    def forward(self, trunk: torch.Tensor) -> torch.Tensor:
        return F.normalize(super().forward(trunk), dim=1)


class ClusterHead(_Head):
    def forward(self, trunk: torch.Tensor) -> torch.Tensor:
        s = torch.sigmoid(super().forward(trunk))
        return s / s.sum(dim=1, keepdim=True)
