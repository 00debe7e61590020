"""LD heads on the U-Net decoder trunk (docs/method.md), dimension-agnostic.

- :class:`EmbeddingHead`: conv3-BN-ReLU-conv3 to D, then L2 norm per pixel: v (B, D, *S).
- :class:`ClusterHead`: conv3-BN-ReLU-conv3 to K, sigmoid, then divided by the sum over K
  (L1 normalization, not softmax, as in the reference): a (B, K, *S), a >= 0, sum_k a = 1.

Both output maps are full resolution, so the elementwise tails (L2 norm; sigmoid and L1 norm)
are autograd functions with hand-written backward passes: the same values as the chain of
torch ops, with about half the full-size passes and saved tensors.
"""

from __future__ import annotations

import torch
from torch import nn

from ...nets import conv_nd, norm_nd


class _UnitNorm(torch.autograd.Function):
    """y = x / max(||x||_2, eps) over dim 1 (``F.normalize(x, dim=1)``).
    Backward: dx = (g - y (y . g)) / n with n = max(||x||, eps); where the clamp is active
    (||x|| < eps) the norm is a constant and dx = g / eps."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, eps: float) -> torch.Tensor:
        norm = torch.linalg.vector_norm(x, dim=1, keepdim=True)
        denom = norm.clamp_min(eps)
        y = x / denom
        ctx.save_for_backward(y, denom, norm < eps)
        return y

    @staticmethod
    def backward(ctx, g: torch.Tensor):
        y, denom, clamped = ctx.saved_tensors
        dot = torch.linalg.vecdot(y, g, dim=1).unsqueeze(1).masked_fill_(clamped, 0.0)  # (n, 1, *S)
        return torch.addcmul(g, y, dot, value=-1.0).div_(denom), None


class _SigmoidL1(torch.autograd.Function):
    """a = s / sum_k s with s = sigmoid(z), over dim 1.
    Backward: ds = (g - sum_k g a) / S, then dz = ds s (1 - s)."""

    @staticmethod
    def forward(ctx, z: torch.Tensor) -> torch.Tensor:
        s = torch.sigmoid(z)
        total = s.sum(dim=1, keepdim=True)
        a = s / total
        ctx.save_for_backward(s, total, a)
        return a

    @staticmethod
    def backward(ctx, g: torch.Tensor):
        s, total, a = ctx.saved_tensors
        dot = torch.linalg.vecdot(a, g, dim=1).unsqueeze(1)
        ds = (g - dot).div_(total)
        return torch.ops.aten.sigmoid_backward(ds, s)


def unit_normalize(x: torch.Tensor, eps: float = 1e-12) -> torch.Tensor:
    """``F.normalize(x, dim=1)`` (same values) with a cheaper backward. x (B, C, *S)."""
    return _UnitNorm.apply(x, eps)


def sigmoid_l1(z: torch.Tensor) -> torch.Tensor:
    """sigmoid(z) / sum_k sigmoid(z) over dim 1 (same values as the torch expression) with a
    cheaper backward. z (B, K, *S)."""
    return _SigmoidL1.apply(z)


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
        """trunk (B, C, *S) -> v (B, D, *S), unit vectors."""
        return unit_normalize(super().forward(trunk))


class ClusterHead(_Head):
    def forward(self, trunk: torch.Tensor, rows: int | None = None) -> torch.Tensor:
        """trunk (B, C, *S) -> a (B, K, *S), or (rows, K, *S) for the first ``rows`` images only.

        ``rows``: the first conv and the norm still see all B images (batch statistics, running
        statistics and their gradients are those of the whole batch), the rest only the first
        ``rows`` images: LD needs no assignments for its mixup views."""
        if rows is None or rows >= trunk.shape[0]:
            return sigmoid_l1(super().forward(trunk))
        conv1, norm, _, conv2 = self
        h = norm(conv1(trunk)).narrow(0, 0, rows)
        return sigmoid_l1(conv2(torch.relu(h)))  # not in place: h is a view of the norm's output
