"""Restoration loss for the Models-Genesis-style baseline (docs/method.md).

pred, target: (B, C, *S). Models Genesis regresses the original image from its distorted
version with the mean squared error, L = mean_{b,c,p} (pred - target)^2; an optional
``weight`` (broadcastable to pred, e.g. a (B, 1, *S) mask) averages only where weight > 0,
weighted.
"""

from __future__ import annotations

import torch


def restoration_loss(pred: torch.Tensor, target: torch.Tensor, weight: torch.Tensor | None = None) -> torch.Tensor:
    if pred.shape != target.shape:
        raise ValueError(f"pred {tuple(pred.shape)} and target {tuple(target.shape)} differ in shape")
    err = (pred.float() - target.float()) ** 2
    if weight is None:
        return err.mean()
    w = weight.float().expand_as(err)
    return (err * w).sum() / w.sum().clamp_min(1e-8)


__all__ = ["restoration_loss"]
