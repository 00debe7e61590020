"""LD losses against slow float64 loop references (values and gradients)."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from localdisc.losses import ld as L


def unit(*shape, dim=-1):
    return F.normalize(torch.randn(*shape, dtype=torch.float64), dim=dim).requires_grad_(True)


def grad(loss, *xs):
    return torch.autograd.grad(loss, xs, allow_unused=True)


# -- references (python loops, float64) ------------------------------------------------------
def ref_spreading(x, pos, tau, both, anchors=None):
    M = x.shape[0]
    keys = x if both else x.detach()
    x = x if anchors is None else anchors
    total = 0.0
    for i in range(M):
        s = [torch.dot(x[i], keys[k]) / tau for k in range(M)]
        Z = sum(torch.exp(s[k]) for k in range(M) if k != i)
        term = torch.log(torch.exp(s[int(pos[i])]) / Z)
        for k in range(M):
            if k != i and k != int(pos[i]):
                term = term + torch.log(1 - torch.exp(s[k]) / Z)
        total = total + term
    return -total / M


def ref_patch(v, G):
    n, D, H, W = v.shape
    h, w = H // G, W // G
    out = torch.zeros(n, G * G, D, dtype=v.dtype)
    for i in range(n):
        for gy in range(G):
            for gx in range(G):
                cell = v[i, :, gy * h : (gy + 1) * h, gx * w : (gx + 1) * w].reshape(D, -1).mean(1)
                out[i, gy * G + gx] = cell / cell.norm()
    return out


def ref_region(a, v):
    n, K = a.shape[:2]
    N = a[0, 0].numel()
    r = []
    for i in range(n):
        rows = []
        for k in range(K):
            s = sum(a[i, k].flatten()[p] * v[i].flatten(1)[:, p] for p in range(N)) / N
            rows.append(s / s.norm())
        r.append(torch.stack(rows))
    return torch.stack(r)


# -- tests --------------------------------------------------------------------------------------
@pytest.mark.parametrize("spatial", [(8, 8), (4, 4, 4)])
def test_patch_embeddings_match_block_means(spatial):
    v = unit(3, 5, *spatial, dim=1)
    u = L.patch_embeddings(v, 2)
    assert u.shape == (3, 2 ** len(spatial), 5)
    if len(spatial) == 2:
        torch.testing.assert_close(u, ref_patch(v, 2))
    assert torch.allclose(u.norm(dim=-1), torch.ones(3, 2 ** len(spatial), dtype=torch.float64))


@pytest.mark.parametrize("both", [False, True])
def test_instance_spreading_value_and_grad(both):
    x = unit(10, 4)
    pos = torch.tensor([5, 6, 7, 8, 9, 0, 1, 2, 3, 4])
    got = L.instance_spreading_loss(x, pos, 0.3, grad_both_sides=both)
    ref = ref_spreading(x, pos, 0.3, both)
    torch.testing.assert_close(got, ref)
    torch.testing.assert_close(grad(got, x)[0], grad(ref, x)[0])


def test_detached_keys_change_the_gradient_not_the_value():
    x = unit(8, 3)
    pos = (torch.arange(8) + 4) % 8
    a = L.instance_spreading_loss(x, pos, 0.2)
    b = L.instance_spreading_loss(x, pos, 0.2, grad_both_sides=True)
    torch.testing.assert_close(a, b)
    ga, gb = grad(a, x)[0], grad(b, x)[0]
    assert not torch.allclose(ga, gb)
    # both-sides gradient = anchor-side (the default) + key-side (anchors held constant)
    key_side = grad(ref_spreading(x, pos, 0.2, True, anchors=x.detach()), x)[0]
    torch.testing.assert_close(gb, ga + key_side)


def test_patch_discrimination_pairs_cells_across_views():
    ua, ub = unit(2, 3, 4), unit(2, 3, 4)
    got = L.patch_discrimination_loss(ua, ub, 0.1)
    x = torch.cat([ua.reshape(6, 4), ub.reshape(6, 4)])
    pos = torch.tensor([6, 7, 8, 9, 10, 11, 0, 1, 2, 3, 4, 5])
    ref = ref_spreading(x, pos, 0.1, False)
    torch.testing.assert_close(got, ref)
    torch.testing.assert_close(torch.cat(grad(got, ua, ub)), torch.cat(grad(ref, ua, ub)))


@pytest.mark.parametrize("both", [False, True])
def test_mixup_loss_reference_and_detached_targets(both):
    um, u1, u2 = unit(2, 3, 4), unit(2, 3, 4), unit(2, 3, 4)
    lam = torch.tensor([0.3, 0.7], dtype=torch.float64)
    got = L.mixup_loss(um, u1, u2, lam, 0.1, grad_both_sides=both)
    t = torch.stack([torch.stack([(lam[b] * u1[b, p] + (1 - lam[b]) * u2[b, p]) / (lam[b] * u1[b, p] + (1 - lam[b]) * u2[b, p]).norm() for p in range(3)]) for b in range(2)])
    x = torch.cat([um.reshape(6, 4), t.detach().reshape(6, 4)])
    pos = (torch.arange(12) + 6) % 12
    ref = ref_spreading(x, pos, 0.1, both)
    torch.testing.assert_close(got, ref)
    g_um, g_u1, g_u2 = grad(got, um, u1, u2)
    torch.testing.assert_close(g_um, grad(ref, um)[0])
    assert g_u1 is None and g_u2 is None  # targets are constants


def test_region_embeddings_equal_broadcast_and_loops():
    a = torch.rand(2, 3, 4, 5, dtype=torch.float64)
    a = (a / a.sum(1, keepdim=True)).requires_grad_(True)
    v = unit(2, 6, 4, 5, dim=1)
    got = L.region_embeddings(a, v)
    naive = F.normalize((a[:, :, None] * v[:, None]).sum((-2, -1)) / 20, dim=-1)  # (n, K, D, H, W) broadcast
    torch.testing.assert_close(got, naive)
    torch.testing.assert_close(got, ref_region(a, v))
    w = torch.randn_like(got)
    torch.testing.assert_close(torch.cat([g.flatten() for g in grad((got * w).sum(), a, v)]), torch.cat([g.flatten() for g in grad((naive * w).sum(), a, v)]))


def test_region_embeddings_3d():
    a, v = torch.rand(2, 3, 2, 3, 4, dtype=torch.float64), unit(2, 5, 2, 3, 4, dim=1)
    naive = F.normalize((a[:, :, None] * v[:, None]).flatten(3).mean(-1), dim=-1)
    torch.testing.assert_close(L.region_embeddings(a, v), naive)


def test_prototypes_and_region_discrimination_reference():
    r = unit(4, 3, 5)
    c = L.prototypes(r)
    c_ref = torch.stack([sum(r[n, k] for n in range(4)) / 4 for k in range(3)])
    c_ref = c_ref / c_ref.norm(dim=1, keepdim=True)
    torch.testing.assert_close(c, c_ref)
    got = L.region_discrimination_loss(r, c, 0.2)
    terms = []
    for n in range(4):
        for k in range(3):
            logits = [torch.dot(r[n, k], c_ref[j]) / 0.2 for j in range(3)]
            terms.append(-(logits[k] - torch.log(sum(torch.exp(l) for l in logits))))
    ref = sum(terms) / len(terms)
    torch.testing.assert_close(got, ref)
    torch.testing.assert_close(grad(got, r)[0], grad(ref, r)[0])


def test_entropy_and_balance_reference():
    a = torch.rand(2, 3, 4, 4, dtype=torch.float64)
    a = (a / a.sum(1, keepdim=True)).requires_grad_(True)
    got = L.entropy_loss(a)
    flat = a.flatten()
    # in bits (log2), as the reference: a uniform q = 1/2 costs exactly 1
    ref = -sum(q * math.log2(q) + (1 - q) * math.log2(1 - q) for q in flat.tolist()) / flat.numel()
    assert abs(float(got.detach()) - ref) < 1e-9
    assert float(L.entropy_loss(torch.full((1, 2, 3, 3), 0.5, dtype=torch.float64))) == pytest.approx(1.0, abs=1e-9)
    ref_t = -(flat * flat.log2() + (1 - flat) * (1 - flat).log2()).mean()
    torch.testing.assert_close(grad(got, a)[0], grad(ref_t, a)[0])
    area = [float(a.detach()[:, k].mean()) for k in range(3)]
    torch.testing.assert_close(L.balance_loss(a), torch.tensor(3 * sum((x - 1 / 3) ** 2 for x in area), dtype=torch.float64))
    equal = torch.full((2, 3, 4, 4), 1 / 3, dtype=torch.float64)
    assert float(L.balance_loss(equal)) == pytest.approx(0.0, abs=1e-12)


def test_losses_stay_finite_when_saturated():
    # identical vectors at a tiny temperature: P saturates; log(1 - P) must not be -inf/nan
    x = F.normalize(torch.ones(6, 3) + 1e-3 * torch.randn(6, 3), dim=1).requires_grad_(True)
    pos = (torch.arange(6) + 3) % 6
    loss = L.instance_spreading_loss(x, pos, 0.01)
    assert torch.isfinite(loss) and torch.isfinite(grad(loss, x)[0]).all()
    far = torch.zeros(4, 2)
    far[:2, 0], far[2:, 1] = 1, 1
    far[1, 0], far[1, 1] = -1, 0  # partner pairs (0,2),(1,3) dissimilar, one negative identical
    far.requires_grad_(True)
    loss = L.instance_spreading_loss(far, torch.tensor([2, 3, 0, 1]), 0.01)
    assert torch.isfinite(loss) and torch.isfinite(grad(loss, far)[0]).all()
    a = torch.zeros(1, 2, 3, 3)
    a[:, 0] = 1
    a.requires_grad_(True)
    ent = L.entropy_loss(a)
    assert torch.isfinite(ent) and torch.isfinite(grad(ent, a)[0]).all()


# -- split (DDP) forms: local anchors vs keys/prototypes/areas of every process ------------------
def split_over_ranks(fn, world, *inputs):
    """Run ``fn(gather, rank, *chunks)`` for ``world`` simulated processes in lockstep threads.

    ``gather`` concatenates the real tensors of every thread (a barrier-synchronized all-gather),
    so backward through it sums the gradient over ranks, like ``runtime.distributed.all_gather``.
    Returns the per-rank losses; their mean must equal the one-process loss (DDP's average)."""
    import threading

    slots, out, barrier = [None] * world, [None] * world, threading.Barrier(world)

    def work(r):
        def gather(t):
            slots[r] = t
            barrier.wait()
            g = torch.cat(list(slots))
            barrier.wait()  # nobody overwrites a slot before everyone has read it
            return g

        try:
            out[r] = fn(gather, r, *[x.chunk(world)[r] for x in inputs])
        except BaseException as e:  # noqa: BLE001 - re-raised below
            out[r] = e
            barrier.abort()

    threads = [threading.Thread(target=work, args=(r,)) for r in range(world)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for o in out:
        if isinstance(o, BaseException):
            raise o
    return out


@pytest.mark.parametrize("both", [False, True])
def test_instance_spreading_split_anchors_vs_all_keys(both):
    x = unit(12, 4)
    pos = torch.tensor([6, 7, 8, 9, 10, 11, 0, 1, 2, 3, 4, 5])
    ref = ref_spreading(x, pos, 0.3, both)
    chunks = [torch.arange(0, 5), torch.arange(5, 10), torch.arange(10, 12)]  # any split, weighted by size
    parts = [L.instance_spreading_loss(x[i], pos[i], 0.3, both, keys=x, self_idx=i) * len(i) / 12 for i in chunks]
    torch.testing.assert_close(sum(parts), ref)
    torch.testing.assert_close(grad(sum(parts), x)[0], grad(ref, x)[0])
    with pytest.raises(ValueError, match="self_idx"):
        L.instance_spreading_loss(x[:3], pos[:3], 0.3, keys=x)


@pytest.mark.parametrize("both", [False, True])
def test_paired_and_mixup_losses_split_over_ranks_equal_one_process(both):
    ua, ub, u1, u2 = (unit(4, 3, 5) for _ in range(4))
    lam = torch.tensor([0.2, 0.5, 0.6, 0.8], dtype=torch.float64)
    for world in (2, 4):
        ranks = split_over_ranks(lambda g, r, a, b: L.patch_discrimination_loss(a, b, 0.2, both, g, r), world, ua, ub)
        ref = L.patch_discrimination_loss(ua, ub, 0.2, both)
        split = sum(ranks) / world
        torch.testing.assert_close(split, ref)
        torch.testing.assert_close(torch.cat(grad(split, ua, ub)), torch.cat(grad(ref, ua, ub)))
        ranks = split_over_ranks(lambda g, r, m, a, b, l: L.mixup_loss(m, a, b, l, 0.1, both, g, r), world, ub, u1, u2, lam)
        ref = L.mixup_loss(ub, u1, u2, lam, 0.1, both)
        split = sum(ranks) / world
        torch.testing.assert_close(split, ref)
        torch.testing.assert_close(grad(split, ub)[0], grad(ref, ub)[0])


def test_prototypes_and_balance_from_gathered_tensors_equal_one_process():
    r = unit(4, 3, 5)
    a = torch.rand(4, 3, 4, 4, dtype=torch.float64)
    a = (a / a.sum(1, keepdim=True)).requires_grad_(True)

    def loss(g, rank, r_local, a_local):
        c = L.prototypes(r_local, g)
        return L.region_discrimination_loss(r_local, c, 0.2), L.balance_loss(a_local, g), c

    ranks = split_over_ranks(loss, 2, r, a)
    torch.testing.assert_close(ranks[0][2], L.prototypes(r))  # the same c_k on every process
    torch.testing.assert_close(ranks[1][2], L.prototypes(r))
    ld = (ranks[0][0] + ranks[1][0]) / 2
    ref_ld = L.region_discrimination_loss(r, L.prototypes(r), 0.2)
    torch.testing.assert_close(ld, ref_ld)
    torch.testing.assert_close(grad(ld, r)[0], grad(ref_ld, r)[0])  # c_k's gradient reaches every rank's r
    torch.testing.assert_close(ranks[0][1], L.balance_loss(a))  # a global statistic: equal everywhere
    torch.testing.assert_close(ranks[1][1], L.balance_loss(a))
    bal = (ranks[0][1] + ranks[1][1]) / 2
    torch.testing.assert_close(grad(bal, a)[0], grad(L.balance_loss(a), a)[0])
