"""Uncertainty-aware feature selection (UAFS), docs/method.md / seed 004.

After a decoder stage: a head conv3-BN-ReLU-conv1 to M=2 channels, softmax, the normalized
entropy H in [0, 1] (entropy / log M), and f' = f + f * (1 - H) = f * (2 - H). No extra loss:
the block learns through the segmentation loss. Labels are never needed at inference.
"""

from __future__ import annotations

import math

import torch
from torch import nn

from .layers import conv_nd, norm_nd


class UAFS(nn.Module):
    """f: (B, C, *S) -> (B, C, *S); ``last_entropy`` keeps H (B, 1, *S) for inspection."""

    def __init__(self, spatial_dims: int, channels: int, hidden: int | None = None, m: int = 2, norm: str = "batch"):
        super().__init__()
        hidden = hidden or max(channels // 2, 8)
        self.m = m
        self.head = nn.Sequential(
            conv_nd(spatial_dims, channels, hidden, 3, bias=False),
            norm_nd(spatial_dims, hidden, norm),  # the U-Net's own --norm (BatchNorm breaks with batch 1 / DDP shards)
            nn.ReLU(inplace=True),
            conv_nd(spatial_dims, hidden, m, 1),
        )
        self.last_entropy: torch.Tensor | None = None

    def normalized_entropy(self, f: torch.Tensor) -> torch.Tensor:
        logp = torch.log_softmax(self.head(f).float(), dim=1)
        h = -(logp.exp() * logp).sum(dim=1, keepdim=True) / math.log(self.m)
        return h.clamp(0.0, 1.0).to(f.dtype)

    def forward(self, f: torch.Tensor) -> torch.Tensor:
        h = self.normalized_entropy(f)
        self.last_entropy = h.detach()
        return f + f * (1.0 - h)
