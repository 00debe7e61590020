"""NT-Xent and the pseudo-class-masked variant against slow float64 loop references."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from localdisc.errors import TrainingError
from localdisc.losses.ntxent import nt_xent, single_class


def reference(z1, z2, tau, labels=None, mode="remove"):
    """Loop over anchors in float64; keys are the 2n embeddings, self excluded."""
    z = F.normalize(torch.cat([z1, z2]).double(), dim=1)
    n = z1.shape[0]
    y = None if labels is None else torch.cat([labels, labels]).tolist()
    total = 0.0
    for i in range(2 * n):
        pos = (i + n) % (2 * n)
        s = [(z[i] @ z[j]) / tau for j in range(2 * n)]
        if labels is None or mode == "remove":
            denom_idx = [j for j in range(2 * n) if j != i and (labels is None or j == pos or y[j] != y[i])]
            denom = sum(torch.exp(s[j]) for j in denom_idx)
            total = total - torch.log(torch.exp(s[pos]) / denom)
        else:
            denom = sum(torch.exp(s[j]) for j in range(2 * n) if j != i)
            ps = [j for j in range(2 * n) if j != i and y[j] == y[i]]
            total = total - sum(torch.log(torch.exp(s[p]) / denom) for p in ps) / len(ps)
    return total / (2 * n)


def _pair(n=6, d=5, seed=0):
    g = torch.Generator().manual_seed(seed)
    z1 = torch.randn(n, d, generator=g, dtype=torch.float64, requires_grad=True)
    z2 = torch.randn(n, d, generator=g, dtype=torch.float64, requires_grad=True)
    return z1, z2


def _check(labels, mode, tau=0.1):
    z1, z2 = _pair()
    got = nt_xent(z1, z2, tau, labels, mode)
    g_got = torch.autograd.grad(got, (z1, z2))
    want = reference(z1, z2, tau, labels, mode)
    g_want = torch.autograd.grad(want, (z1, z2))
    assert got.item() == pytest.approx(want.item(), rel=1e-5)
    for a, b in zip(g_got, g_want):
        torch.testing.assert_close(a.double(), b, rtol=1e-4, atol=1e-6)


def test_plain_matches_reference():
    _check(None, "remove")


@pytest.mark.parametrize("mode", ["remove", "positive"])
def test_masked_matches_reference(mode):
    _check(torch.tensor([0, 1, 0, 2, 1, 0]), mode)


@pytest.mark.parametrize("mode", ["remove", "positive"])
def test_every_sample_own_class_equals_plain(mode):
    z1, z2 = _pair()
    plain = nt_xent(z1, z2, 0.1)
    masked = nt_xent(z1, z2, 0.1, torch.arange(6), mode)
    assert masked.item() == pytest.approx(plain.item(), rel=1e-6)


def test_remove_is_lower_than_plain_when_classes_shared():
    z1, z2 = _pair()
    assert nt_xent(z1, z2, 0.1, torch.tensor([0, 0, 1, 1, 2, 2])) < nt_xent(z1, z2, 0.1)


@pytest.mark.parametrize("mode", ["remove", "positive"])
def test_all_one_class_raises_clear_error(mode):
    z1, z2 = _pair()
    labels = torch.zeros(6, dtype=torch.long)
    assert single_class(labels)
    with pytest.raises(TrainingError, match="no negatives"):
        nt_xent(z1, z2, 0.1, labels, mode)


def test_perfect_alignment_limit():
    # identical views, orthogonal samples: loss = log(1 + (2n-2) e^{-1/tau} ) / ... exact value
    n, tau = 4, 0.5
    z = torch.eye(n)
    loss = nt_xent(z, z.clone(), tau)
    want = -math.log(math.exp(1 / tau) / (math.exp(1 / tau) + (2 * n - 2)))
    assert loss.item() == pytest.approx(want, rel=1e-6)


@pytest.mark.parametrize("labels", [None, torch.tensor([0, 1, 0, 2, 1, 0])])
@pytest.mark.parametrize("mode", ["remove", "positive"])
def test_gathered_keys_reproduce_full_batch(labels, mode):
    """Two simulated DDP ranks (local anchors, gathered keys): the rank-mean loss and its gradient
    (what DDP's all-gather backward + gradient averaging computes) equal the full-batch ones."""
    z1, z2 = _pair()
    full = nt_xent(z1, z2, 0.1, labels, mode)
    g_full = torch.autograd.grad(full, (z1, z2))
    losses = []
    for r in range(2):
        calls = iter([z1, z2, labels])

        def gather(x, r=r):
            src = next(calls)
            # other ranks' keys are their normalized float32 embeddings, still differentiable
            other = src if src.dtype == torch.long else F.normalize(src.float(), dim=1)
            return torch.cat([x if i == r else other[3 * i : 3 * i + 3] for i in range(2)])

        lab = None if labels is None else labels[3 * r : 3 * r + 3]
        losses.append(nt_xent(z1[3 * r : 3 * r + 3], z2[3 * r : 3 * r + 3], 0.1, lab, mode, gather=gather, rank=r))
    split = (losses[0] + losses[1]) / 2
    g_split = torch.autograd.grad(split, (z1, z2))
    assert split.item() == pytest.approx(full.item(), rel=1e-5)
    for a, b in zip(g_split, g_full):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-6)
