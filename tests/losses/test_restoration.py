"""Restoration (Models Genesis) loss: MSE, optional weights."""

from __future__ import annotations

import pytest
import torch

from localdisc.losses.restoration import restoration_loss


def test_mse_value_and_gradient():
    g = torch.Generator().manual_seed(0)
    pred = torch.rand(2, 1, 4, 4, 3, generator=g, dtype=torch.float64, requires_grad=True)
    target = torch.rand(2, 1, 4, 4, 3, generator=g, dtype=torch.float64)
    loss = restoration_loss(pred, target)
    want = sum(float((p - t) ** 2) for p, t in zip(pred.flatten().tolist(), target.flatten().tolist())) / pred.numel()
    assert loss.item() == pytest.approx(want, rel=1e-6)
    (grad,) = torch.autograd.grad(loss, pred)
    torch.testing.assert_close(grad.double(), 2 * (pred - target).detach() / pred.numel(), rtol=1e-5, atol=1e-8)


def test_weight_restricts_average():
    pred, target = torch.zeros(1, 1, 2, 2), torch.tensor([[[[1.0, 3.0], [0.0, 0.0]]]])
    w = torch.tensor([[[[1.0, 0.0], [1.0, 0.0]]]])
    assert restoration_loss(pred, target, w).item() == pytest.approx(0.5)
    with pytest.raises(ValueError, match="differ in shape"):
        restoration_loss(pred, target[..., :1])
