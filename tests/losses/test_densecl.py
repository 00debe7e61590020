"""Dense InfoNCE against a float64 loop reference; similarity matching."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from localdisc.losses.densecl import dense_info_nce, match_by_similarity


def reference(q, k, tau, match, same_image_negatives):
    q, k = F.normalize(q.double(), dim=1), F.normalize(k.double(), dim=1)
    b, _, l = q.shape
    total = 0.0
    for i in range(b):
        for a in range(l):
            pos = torch.exp(q[i, :, a] @ k[i, :, int(match[i, a])] / tau)
            neg = 0.0
            for j in range(b):
                for c in range(l):
                    if j == i and (not same_image_negatives or c == int(match[i, a])):
                        continue
                    neg = neg + torch.exp(q[i, :, a] @ k[j, :, c] / tau)
            total = total - torch.log(pos / (pos + neg))
    return total / (b * l)


@pytest.mark.parametrize("same_image_negatives", [False, True])
@pytest.mark.parametrize("shuffled", [False, True])
def test_matches_loop_reference(same_image_negatives, shuffled):
    g = torch.Generator().manual_seed(1)
    q = torch.randn(3, 4, 5, generator=g, dtype=torch.float64, requires_grad=True)
    k = torch.randn(3, 4, 5, generator=g, dtype=torch.float64, requires_grad=True)
    match = torch.stack([torch.randperm(5, generator=g) for _ in range(3)]) if shuffled else torch.arange(5).expand(3, 5)
    got = dense_info_nce(q, k, 0.2, match if shuffled else None, same_image_negatives)
    want = reference(q, k, 0.2, match, same_image_negatives)
    assert got.item() == pytest.approx(want.item(), rel=1e-5)
    for a, b in zip(torch.autograd.grad(got, (q, k)), torch.autograd.grad(want, (q, k))):
        torch.testing.assert_close(a.double(), b, rtol=1e-4, atol=1e-6)


def test_match_by_similarity_recovers_permutation():
    g = torch.Generator().manual_seed(2)
    f1 = torch.randn(2, 8, 6, generator=g)
    perm = torch.stack([torch.randperm(6, generator=g) for _ in range(2)])
    f2 = torch.stack([f1[i][:, perm[i].argsort()] for i in range(2)])  # f2[:, :, perm[l]] == f1[:, :, l]
    assert torch.equal(match_by_similarity(f1, f2), perm)


def test_gathered_keys_reproduce_full_batch():
    g = torch.Generator().manual_seed(3)
    q = torch.randn(4, 4, 3, generator=g, dtype=torch.float64, requires_grad=True)
    k = torch.randn(4, 4, 3, generator=g, dtype=torch.float64, requires_grad=True)
    full = dense_info_nce(q, k, 0.2)
    g_full = torch.autograd.grad(full, (q, k))
    losses = []
    for r in range(2):
        other = F.normalize(k.float(), dim=1).transpose(1, 2)

        def gather(x, r=r):
            return torch.cat([x if i == r else other[2 * i : 2 * i + 2] for i in range(2)])

        losses.append(dense_info_nce(q[2 * r : 2 * r + 2], k[2 * r : 2 * r + 2], 0.2, gather=gather, rank=r))
    split = (losses[0] + losses[1]) / 2
    assert split.item() == pytest.approx(full.item(), rel=1e-5)
    for a, b in zip(torch.autograd.grad(split, (q, k)), g_full):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-6)
