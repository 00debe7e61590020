"""Method wiring: for fixed views and weights, each method's loss equals the loss functions
applied by hand to the tensors the method names (docs/method.md: right slices, aligned maps, the method's
temperatures and weights written here as literals, so a changed default is caught).

The loss functions themselves are checked against float64 references in tests/losses; here the
question is only whether a method feeds them the right tensors.
"""

from __future__ import annotations

import math
from dataclasses import replace

import pytest
import torch
import torch.nn.functional as F

from localdisc.losses import ld as L
from localdisc.methods import augment
from localdisc.methods.ld import LDConfig, LocalDiscrimination, make_views
from localdisc.nets import UNet, UNetConfig

TINY = dict(encoder_channels=(4, 8, 8), decoder_channels=(8, 8), norm="group")


def _undo_by_hand(x: torch.Tensor, op: augment.Dihedral) -> torch.Tensor:
    """Inverse of ``apply_dihedral`` for one (C, *S) map: rotate back, then flip back."""
    plane = tuple(p + 1 for p in op.plane)
    x = torch.rot90(x, -op.k, plane)
    return torch.flip(x, [d + 1 for d in op.flip_dims]) if op.flip_dims else x


# ---------------------------------------------------------------- LD
@pytest.mark.parametrize("shift", [0.0, 0.5])
def test_ld_loss_terms_equal_the_spec_by_hand(monkeypatch, shift):
    torch.manual_seed(0)
    cfg = LDConfig(stage="2", shift=shift)  # otherwise the defaults are what is pinned: grid 8, taus 0.1/0.1/0.2, weights 1/1/10/0.1
    model = LocalDiscrimination(UNet(UNetConfig(in_channels=1, **TINY)), cfg).eval()
    images = torch.rand(4, 1, 16, 16)
    views = make_views(images, cfg)
    while not any(op.k or op.flip_dims for op in views.ops):  # view b must really be turned
        views = make_views(images, cfg)
    if shift:  # view b must really be shifted: it is rolled back before its rot90/flip is undone
        assert views.shifts is not None and views.shifts.abs().sum() > 0
        unroll = [(-int(dy), -int(dx)) for dy, dx in views.shifts]
    else:
        assert views.shifts is None
        unroll = [(0, 0)] * 4
    monkeypatch.setattr("localdisc.methods.ld.method.make_views", lambda imgs, c: views)
    with torch.no_grad():
        terms = model.loss_terms(model.forward_views(images))

        B = 2
        trunk = model.backbone.forward_features(views.inputs).trunk
        v, a = model.embed_head(trunk), model.cluster_head(trunk)
        # view b's rot90/flip undone sample by sample, so pixel p of a and b show the same anatomy
        v = torch.cat([v[: 2 * B], torch.stack([_undo_by_hand(torch.roll(v[2 * B + i], unroll[i], (1, 2)), op) for i, op in enumerate(views.ops)]), v[4 * B :]])
        a = torch.cat([a[: 2 * B], torch.stack([_undo_by_hand(torch.roll(a[2 * B + i], unroll[i], (1, 2)), op) for i, op in enumerate(views.ops)]), a[4 * B :]])
        u = F.normalize(F.adaptive_avg_pool2d(v, 8), dim=1).flatten(2).transpose(1, 2)  # (5B, 64, D)
        x1a, x2a, x1b, x2b, m = u[:B], u[B : 2 * B], u[2 * B : 3 * B], u[3 * B : 4 * B], u[4 * B :]
        pd = L.patch_discrimination_loss(torch.cat([x1a, x2a]), torch.cat([x1b, x2b]), 0.1)
        mix = L.mixup_loss(m, x1a, x2a, views.lam, 0.1)
        a4, v4 = a[: 4 * B], v[: 4 * B]  # the mixup view has no region target
        r = F.normalize(torch.einsum("nkp,ndp->nkd", a4.flatten(2), v4.flatten(2)) / v4[0, 0].numel(), dim=2)
        c = F.normalize(r.mean(0), dim=1)
        ld = L.region_discrimination_loss(r, c, 0.2)
        q = a4.clamp(1e-6, 1 - 1e-6)
        ent = -(q * torch.log2(q) + (1 - q) * torch.log2(1 - q)).mean()
    expect = {"pd": 1.0 * pd, "mix": 1.0 * mix, "ld": 10.0 * ld, "ent": 0.1 * ent}
    assert set(terms) == set(expect)
    for k in expect:
        torch.testing.assert_close(terms[k], expect[k], rtol=1e-5, atol=1e-6, msg=k)


def test_ld_stage2_starts_from_trained_stage1_weights(tmp_path):
    """Stage 1 trains with lr > 0 (so its weights are far from a fresh init); stage 2 then takes
    ONE Adam step, which moves each parameter by at most lr: every stage-1 tensor must be within
    lr of its stage-2 value. A stage 2 that copied nothing starts at the fresh init instead."""
    import numpy as np
    from PIL import Image

    from localdisc.runtime.checkpoint import load_weights
    from localdisc.train.pretrain import PretrainConfig, run_pretraining

    (tmp_path / "data").mkdir()
    rng = np.random.default_rng(0)
    for i in range(4):
        Image.fromarray((rng.random((16, 16)) * 255).astype(np.uint8)).save(tmp_path / "data" / f"i{i}.png")
    lr = 0.05
    cfg = PretrainConfig(data=str(tmp_path / "data"), out=str(tmp_path / "run"), steps=5, batch_size=2, image_size=(16, 16), lr=lr,
                         picture_every=0, log_every=1, checkpoint_every=100, **TINY)
    out = run_pretraining(cfg, LDConfig(stage="both", stage1_steps=4, grid=4))
    s1, s2 = load_weights(out / "stage1" / "model.safetensors"), load_weights(out / "model.safetensors")
    shared = [k for k in s1 if k in s2 and "running_" not in k and "num_batches" not in k]
    assert any(k.startswith("backbone.") for k in shared) and any(k.startswith("embed_head.") for k in shared)
    worst = max(float((s1[k] - s2[k]).abs().max()) for k in shared)
    assert worst <= lr * 1.001, f"stage 2 is {worst:.3f} away from stage 1 after one step of lr {lr}"


# ---------------------------------------------------------------- SimCLR and cluster-contrast
def ref_nt_xent(z1: torch.Tensor, z2: torch.Tensor, tau: float, labels: list[int] | None = None) -> float:
    """NT-Xent written out per anchor: 2n anchors, the other view of the same image is the
    positive, every other vector a negative, except (with labels) vectors of the anchor's
    pseudo-class, which leave the denominator."""
    z = F.normalize(torch.cat([z1, z2]).double(), dim=1)
    n = z1.shape[0]
    total = 0.0
    for i in range(2 * n):
        pos = (i + n) % (2 * n)
        denom = 0.0
        for j in range(2 * n):
            if j == i or (labels is not None and j != pos and labels[j % n] == labels[i % n]):
                continue
            denom += math.exp(float(z[i] @ z[j]) / tau)
        total += -(float(z[i] @ z[pos]) / tau - math.log(denom))
    return total / (2 * n)


def _fixed_two_views(monkeypatch, module: str, v1: torch.Tensor, v2: torch.Tensor) -> None:
    monkeypatch.setattr(f"{module}.two_views", lambda images, cfg: (v1, v2))


def test_simclr_contrasts_view1_with_view2(monkeypatch):
    from localdisc.methods.simclr.method import SimCLR, SimCLRConfig

    torch.manual_seed(0)
    model = SimCLR(UNet(UNetConfig(in_channels=1, **TINY)), SimCLRConfig()).eval()
    v1, v2 = torch.rand(4, 1, 16, 16), torch.rand(4, 1, 16, 16)
    _fixed_two_views(monkeypatch, "localdisc.methods.simclr.method", v1, v2)
    with torch.no_grad():
        loss, _ = model.training_step(torch.rand(4, 1, 16, 16))
        z = model.project(torch.cat([v1, v2]))
    assert float(loss) == pytest.approx(ref_nt_xent(z[:4], z[4:], 0.1), rel=1e-5)


def test_cluster_contrast_removes_same_pseudo_class_negatives(monkeypatch):
    from localdisc.methods.cluster_contrast.method import ClusterContrast, ClusterContrastConfig

    torch.manual_seed(0)
    model = ClusterContrast(UNet(UNetConfig(in_channels=1, **TINY)), ClusterContrastConfig()).eval()
    v1, v2 = torch.rand(4, 1, 16, 16), torch.rand(4, 1, 16, 16)
    _fixed_two_views(monkeypatch, "localdisc.methods.simclr.method", v1, v2)
    model._labels = torch.tensor([2, 0, 1, 0, 1, 2])  # pseudo-class per dataset index
    batch = {"image": torch.rand(4, 1, 16, 16), "index": torch.tensor([5, 1, 3, 2])}  # classes 2, 0, 0, 1
    with torch.no_grad():
        loss, _ = model.training_step(batch)
        z = model.project(torch.cat([v1, v2]))
    masked, plain = ref_nt_xent(z[:4], z[4:], 0.1, [2, 0, 0, 1]), ref_nt_xent(z[:4], z[4:], 0.1)
    assert abs(masked - plain) > 1e-3  # the pseudo-classes matter for this batch
    assert float(loss) == pytest.approx(masked, rel=1e-5)
    # SupCon option: same-class vectors become extra positives (mean log-probability over them)
    model.cfg = replace(model.cfg, same_class="positive")
    with torch.no_grad():
        sup, _ = model.training_step(batch)
    assert abs(float(sup) - masked) > 1e-4


# ---------------------------------------------------------------- DenseCL and Genesis
def test_densecl_loss_is_global_plus_dense_on_aligned_maps(monkeypatch):
    from localdisc.losses.densecl import dense_info_nce
    from localdisc.methods.densecl.method import DenseCL, DenseCLConfig
    from localdisc.methods.densecl.views import make_views as dense_views

    torch.manual_seed(0)
    cfg = DenseCLConfig(grid=4)
    model = DenseCL(UNet(UNetConfig(in_channels=1, **TINY)), cfg).eval()
    images = torch.rand(4, 1, 16, 16)
    views = dense_views(images, cfg)
    while not any(op.k or op.flip_dims for op in views.ops):
        views = dense_views(images, cfg)
    monkeypatch.setattr("localdisc.methods.densecl.method.make_views", lambda imgs, c: views)
    with torch.no_grad():
        loss, _ = model.training_step(images)
        feats = model.backbone.forward_features(torch.cat([views.v1, views.v2]))
        z = model.proj_head(feats.encoder[-1].mean(dim=(2, 3)))
        glob = ref_nt_xent(z[:4], z[4:], 0.1)
        m2 = torch.stack([_undo_by_hand(feats.trunk[4 + i], op) for i, op in enumerate(views.ops)])
        q1, q2 = model.dense_head(feats.trunk[:4]), model.dense_head(m2)
        dense = 0.5 * (dense_info_nce(q1, q2, 0.2) + dense_info_nce(q2, q1, 0.2))
    assert float(loss) == pytest.approx(0.5 * glob + 0.5 * float(dense), rel=1e-5)


def test_genesis_restores_the_distorted_view_toward_the_undistorted_one(monkeypatch):
    from localdisc.methods.genesis.method import Genesis, GenesisConfig

    torch.manual_seed(0)
    model = Genesis(UNet(UNetConfig(in_channels=1, **TINY)), GenesisConfig()).eval()
    target, distorted = torch.rand(2, 1, 16, 16), torch.rand(2, 1, 16, 16)
    monkeypatch.setattr("localdisc.methods.genesis.method.geometry", lambda images, cfg, size: target)
    monkeypatch.setattr(Genesis, "distort", lambda self, x, generator=None: distorted if torch.equal(x, target) else None)
    with torch.no_grad():
        loss, _ = model.training_step(torch.rand(2, 1, 16, 16))
        pred = torch.sigmoid(model.restore_head(model.backbone(distorted)))
    assert float(loss) == pytest.approx(float(((pred - target) ** 2).mean()), rel=1e-6)


def test_ld_shape_adds_the_discriminator_terms_on_cluster_zero(monkeypatch):
    from localdisc.methods.ld_shape import ShapeGuidedLD, ShapeLDConfig

    torch.manual_seed(0)
    cfg = ShapeLDConfig(stage="2", disc_layers=2, disc_width=8)
    model = ShapeGuidedLD(UNet(UNetConfig(in_channels=1, **TINY)), cfg).eval()
    images = torch.rand(4, 1, 16, 16)
    views = make_views(images, cfg)
    monkeypatch.setattr("localdisc.methods.ld.method.make_views", lambda imgs, c: views)
    priors = (torch.rand(8, 1, 16, 16) > 0.7).float()
    monkeypatch.setattr(ShapeGuidedLD, "sample_priors", lambda self, n, size: priors)
    with torch.no_grad():
        out = model.forward_views(images)
        terms = model.loss_terms(out)
        plain = LocalDiscrimination.loss_terms(model, out)
        a = out["assign"][:8]
        a0 = (a.argmax(1, keepdim=True) == 0).float()  # default: D judges the hard argmax map of cluster 0
        bce = F.binary_cross_entropy_with_logits
        real, fake = model.discriminator(priors), model.discriminator(a0)
    assert set(terms) == set(plain) | {"disc", "adv"}
    for k in plain:
        torch.testing.assert_close(terms[k], plain[k])
    torch.testing.assert_close(terms["disc"], 1.0 * (bce(real, torch.ones_like(real)) + bce(fake, torch.zeros_like(fake))))
    torch.testing.assert_close(terms["adv"], 1.0 * bce(fake, torch.ones_like(fake)))  # the generator wants D to say "prior"
