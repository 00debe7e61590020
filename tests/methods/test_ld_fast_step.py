"""The fast LD step (issue 28) against the implementation it replaced, kept here as the slow
reference: full-size alignment of view b's maps sample by sample, ``F.adaptive_avg_pool``,
``F.normalize``, sigmoid / sum, the region tensor by broadcasting, the entropy and the
instance-spreading loss as chains of torch ops. Values and gradients, float64 where the code
keeps the dtype (the method computes its losses in float32, as before)."""

from __future__ import annotations

import copy
import math

import pytest
import torch
import torch.nn.functional as F

from localdisc.losses import ld as L
from localdisc.methods import augment
from localdisc.methods.ld import LDConfig, LocalDiscrimination, make_views
from localdisc.methods.ld.heads import sigmoid_l1, unit_normalize
from localdisc.methods.ld.views import aligned_patch_embeddings
from localdisc.nets import UNet, UNetConfig

TINY = dict(encoder_channels=(4, 8, 8), decoder_channels=(8, 8))


# -- the replaced implementation ----------------------------------------------------------------
def old_align(maps, views):
    B = views.B
    b = maps[2 * B : 4 * B]
    if views.shifts is not None:
        b = torch.stack([torch.roll(b[i], tuple(-int(s) for s in views.shifts[i]), tuple(range(1, b.dim() - 1))) for i in range(2 * B)])
    b = torch.stack([torch.flip(torch.rot90(b[i], -op.k, (op.plane[0] + 1, op.plane[1] + 1)), [f + 1 for f in op.flip_dims])
                     if op.flip_dims else torch.rot90(b[i], -op.k, (op.plane[0] + 1, op.plane[1] + 1)) for i, op in enumerate(views.ops)])
    return torch.cat([maps[: 2 * B], b, maps[4 * B :]])


def old_patch_embeddings(v, grid):
    pooled = F.adaptive_avg_pool2d(v, grid) if v.dim() == 4 else F.adaptive_avg_pool3d(v, grid)
    return F.normalize(pooled.flatten(2).transpose(1, 2), dim=-1)


def old_spreading(x, pos, tau, both=False, keys=None, self_idx=None):
    m = x.shape[0]
    rows = torch.arange(m)
    keys, self_idx = (x, rows) if keys is None else (keys, self_idx)
    s = x @ (keys if both else keys.detach()).T / tau
    own = torch.zeros(s.shape, dtype=torch.bool)
    own[rows, self_idx] = True
    s = s.masked_fill(own, float("-inf"))
    log_p = s - torch.logsumexp(s, dim=1, keepdim=True)
    negatives = own.clone()
    negatives[rows, pos] = True
    x = log_p.masked_fill(negatives, -1.0).clamp(max=-1e-7)
    log_not = torch.where(x > -math.log(2), torch.log(-torch.expm1(x)), torch.log1p(-torch.exp(x))).masked_fill(negatives, 0.0)
    return -(log_p[rows, pos] + log_not.sum(1)).mean()


def old_paired(xa, xb, tau):
    n, P, D = xa.shape
    x = torch.cat([xa.reshape(n * P, D), xb.reshape(n * P, D)])
    return old_spreading(x, (torch.arange(2 * n * P) + n * P) % (2 * n * P), tau)


def old_entropy(a, eps=1e-6):
    q = a.clamp(eps, 1 - eps)
    return -(q * torch.log(q) + (1 - q) * torch.log1p(-q)).mean() / math.log(2)


def old_step_terms(model, images):
    """The replaced ``loss_terms(forward_views(images))``, op for op."""
    cfg = model.cfg
    views = make_views(images, cfg)
    B = views.B
    trunk = model.backbone.forward_features(views.inputs).trunk
    e, c = model.embed_head, model.cluster_head
    v = F.normalize(e[3](e[2](e[1](e[0](trunk)))), dim=1)
    s = torch.sigmoid(c[3](c[2](c[1](c[0](trunk)))))
    v, a = old_align(v, views).float(), old_align(s / s.sum(dim=1, keepdim=True), views)
    u = old_patch_embeddings(v, cfg.grid)
    lam = views.lam.view(-1, 1, 1).to(u.dtype)
    t = F.normalize(lam * u[:B] + (1 - lam) * u[B : 2 * B], dim=-1).detach()
    a4 = a[: 4 * B].float()
    r = F.normalize((a4[:, :, None] * v[: 4 * B, None]).flatten(3).mean(-1), dim=-1)  # the (n, K, D, *S) broadcast
    proto = F.normalize(r.mean(0), dim=-1)
    ld = -torch.diagonal(torch.log_softmax(torch.einsum("nkd,jd->nkj", r, proto) / cfg.tau_ld, dim=-1), dim1=1, dim2=2).mean()
    return {"pd": cfg.w_pd * old_paired(u[: 2 * B], u[2 * B : 4 * B], cfg.tau_pd), "mix": cfg.w_mix * old_paired(u[4 * B :], t, cfg.tau_mix),
            "ld": cfg.w_ld * ld, "ent": cfg.w_ent * old_entropy(a4)}


def unit(*shape, dim=-1):
    return F.normalize(torch.randn(*shape, dtype=torch.float64), dim=dim).requires_grad_(True)


def grads(loss, *xs):
    return torch.autograd.grad(loss, xs, allow_unused=True)


# -- the whole step -----------------------------------------------------------------------------
@pytest.mark.parametrize("size,shift", [((16, 16), 0.0), ((16, 16), 0.5), ((12, 20), 0.3), ((8, 8, 8), 0.5)])
def test_training_step_equals_the_replaced_step(size, shift):
    torch.manual_seed(0)
    cfg = LDConfig(stage="2", grid=4, shift=shift)
    model = LocalDiscrimination(UNet(UNetConfig(spatial_dims=len(size), in_channels=1, **TINY)), cfg).double().train()
    images = torch.rand(4, 1, *size, dtype=torch.float64)
    torch.manual_seed(5)
    views = make_views(images, cfg)
    if not any(op.k or op.flip_dims for op in views.ops):
        pytest.skip("draw without a rot90/flip")  # seed 5 draws some for every case here

    twin = copy.deepcopy(model)
    torch.manual_seed(5)
    ref = old_step_terms(twin, images)
    ref_grads = grads(sum(ref.values()), *twin.parameters())
    torch.manual_seed(5)
    loss, logs = model.training_step(images)
    got_grads = grads(loss, *model.parameters())
    assert list(logs) == [f"loss_{k}" for k in ref]
    for k, t in ref.items():
        assert logs[f"loss_{k}"] == pytest.approx(float(t.detach()), rel=1e-6, abs=1e-6), k
    for (name, _), g, h in zip(model.named_parameters(), got_grads, ref_grads):
        torch.testing.assert_close(g, h, rtol=1e-4, atol=1e-7, msg=name)  # float32 losses, float64 network
    # both norms of the heads saw all 5B views: the running statistics moved the same way
    for (name, b), r in zip(model.named_buffers(), twin.buffers()):
        torch.testing.assert_close(b, r, msg=name)


def test_training_step_uses_a_subclass_loss_terms():
    class Extra(LocalDiscrimination):
        def loss_terms(self, outputs):
            return {**super().loss_terms(outputs), "extra": outputs["assign"][:, 0].mean()}

    torch.manual_seed(0)
    model = Extra(UNet(UNetConfig(in_channels=1, **TINY)), LDConfig(stage="2", grid=4))
    _, logs = model.training_step(torch.rand(2, 1, 16, 16))
    assert set(logs) == {"loss_pd", "loss_mix", "loss_ld", "loss_ent", "loss_extra"}


# -- the pieces, float64 ------------------------------------------------------------------------
@pytest.mark.parametrize("size", [(16, 16), (12, 20), (10, 10), (8, 8, 8), (6, 9, 7)])
def test_cell_means_equal_adaptive_pooling_values_and_gradients(size):
    v = torch.randn(3, 5, *size, dtype=torch.float64, requires_grad=True)
    pool = F.adaptive_avg_pool2d if len(size) == 2 else F.adaptive_avg_pool3d
    for grid in (4, 3):
        got, ref = L.cell_means(v, grid), pool(v, grid)
        torch.testing.assert_close(got, ref)
        w = torch.randn_like(ref)
        torch.testing.assert_close(grads((got * w).sum(), v)[0], grads((ref * w).sum(), v)[0])


@pytest.mark.parametrize("size", [(16, 16), (12, 20), (8, 8, 8)])
def test_shifted_cell_means_equal_pooling_of_the_rolled_maps(size):
    v = torch.randn(4, 3, *size, dtype=torch.float64, requires_grad=True)
    shifts = torch.stack([torch.randint(-s, s + 1, (4,)) for s in size], dim=1)
    dims = tuple(range(1, len(size) + 1))
    rolled = torch.stack([torch.roll(v[i], tuple(-int(s) for s in shifts[i]), dims) for i in range(4)])
    pool = F.adaptive_avg_pool2d if len(size) == 2 else F.adaptive_avg_pool3d
    got, ref = L.cell_means(v, 4, shifts), pool(rolled, 4)
    torch.testing.assert_close(got, ref)
    w = torch.randn_like(ref)
    torch.testing.assert_close(grads((got * w).sum(), v)[0], grads((ref * w).sum(), v)[0])


@pytest.mark.parametrize("size,crop,shift", [((12, 12), (8, 8), 0.0), ((12, 12), (8, 8), 0.5), ((10, 14), (), 0.3), ((8, 8, 8), (8, 8, 8), 0.5)])
def test_aligned_patch_embeddings_equal_pooling_of_the_aligned_maps(size, crop, shift):
    torch.manual_seed(1)
    cfg = LDConfig(stage="2", crop_size=crop, shift=shift)
    views = make_views(torch.rand(6, 1, *size), cfg)
    assert any(op.k or op.flip_dims for op in views.ops)
    v = torch.randn(15, 4, *views.inputs.shape[2:], dtype=torch.float64, requires_grad=True)
    got, ref = aligned_patch_embeddings(v, views, 4), old_patch_embeddings(old_align(v, views), 4)
    torch.testing.assert_close(got, ref)
    w = torch.randn_like(ref)
    torch.testing.assert_close(grads((got * w).sum(), v)[0], grads((ref * w).sum(), v)[0])


def test_head_tails_equal_the_torch_expressions():
    x = torch.randn(3, 6, 5, 4, dtype=torch.float64)
    x[0, :, 0, 0] = 0.0  # a zero vector: the clamp of the norm is active there
    x.requires_grad_(True)
    got, ref = unit_normalize(x), F.normalize(x, dim=1)
    assert torch.equal(got, ref)
    w = torch.randn_like(ref)
    torch.testing.assert_close(grads((got * w).sum(), x)[0], grads((ref * w).sum(), x)[0])
    z = torch.randn(3, 7, 5, 4, dtype=torch.float64, requires_grad=True)
    s = torch.sigmoid(z)
    got, ref = sigmoid_l1(z), s / s.sum(dim=1, keepdim=True)
    assert torch.equal(got, ref)
    torch.testing.assert_close(grads((got * w[:, :1]).sum(), z)[0], grads((ref * w[:, :1]).sum(), z)[0])


@pytest.mark.parametrize("norm", ["batch", "group"])
def test_cluster_head_on_the_first_rows_keeps_the_whole_batch_statistics(norm):
    from localdisc.methods.ld import ClusterHead

    torch.manual_seed(2)
    head = ClusterHead(2, 8, 5, norm=norm).double().train()
    twin = ClusterHead(2, 8, 5, norm=norm).double().train()
    twin.load_state_dict(head.state_dict())
    trunk = torch.randn(5, 8, 6, 6, dtype=torch.float64, requires_grad=True)
    got, ref = head(trunk, rows=4), twin(trunk)[:4]
    assert got.shape == (4, 5, 6, 6)
    torch.testing.assert_close(got, ref)
    w = torch.randn_like(ref)
    g = grads((got * w).sum(), trunk, *head.parameters())
    h = grads((ref * w).sum(), trunk, *twin.parameters())
    for a, b in zip(g, h):
        torch.testing.assert_close(a, b)
    for a, b in zip(head.buffers(), twin.buffers()):
        torch.testing.assert_close(a, b)


def test_entropy_value_is_the_same_expression_and_gradient_matches():
    a = torch.rand(2, 3, 5, 5, dtype=torch.float64)
    a[0, 0, 0, :2] = torch.tensor([0.0, 1.0])  # outside [eps, 1 - eps]: the clamp passes no gradient
    a.requires_grad_(True)
    got, ref = L.entropy_loss(a), old_entropy(a)
    assert float(got.detach()) == float(ref.detach())
    torch.testing.assert_close(grads(got, a)[0], grads(ref, a)[0])


@pytest.mark.parametrize("both", [False, True])
@pytest.mark.parametrize("tau", [0.1, 0.005])
def test_instance_spreading_equals_the_autograd_chain(both, tau):
    torch.manual_seed(3)
    x = unit(40, 6)
    with torch.no_grad():
        x[1] = x[0]  # saturated pairs at a small tau: the other branch and the clamp of log1mexp
        x[7] = -x[6]
    pos = (torch.arange(40) + 20) % 40
    got, ref = L.instance_spreading_loss(x, pos, tau, both), old_spreading(x, pos, tau, both)
    assert float(got.detach()) == float(ref.detach())
    torch.testing.assert_close(grads(got, x)[0], grads(ref, x)[0])
    idx = torch.arange(10, 25)  # split (DDP) form
    got = L.instance_spreading_loss(x[idx], pos[idx], tau, both, keys=x, self_idx=idx)
    ref = old_spreading(x[idx], pos[idx], tau, both, keys=x, self_idx=idx)
    assert float(got) == pytest.approx(float(ref), rel=1e-12)
    torch.testing.assert_close(grads(got, x)[0], grads(ref, x)[0])


def test_dihedral_ops_on_the_grid_match_the_ops_on_the_maps():
    """The identity the fast step rests on: pooling then undoing view b's rot90/flip on the grid
    equals undoing it on the full maps then pooling, also where cells overlap (size % G != 0)."""
    torch.manual_seed(4)
    for size in [(12, 12), (10, 10), (6, 6, 6)]:
        x = torch.randn(16, 2, *size, dtype=torch.float64)
        ops = augment.sample_dihedral(16, size)
        pooled = L.cell_means(x, 4)
        torch.testing.assert_close(augment.invert_dihedral(pooled, ops), L.cell_means(augment.invert_dihedral(x, ops), 4))
