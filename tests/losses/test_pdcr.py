"""PDCR: label descriptors, affinity and loss against slow float64 loop references."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import torch

from localdisc.errors import ConfigError
from localdisc.losses.pdcr import PDCRLoss, affinity, label_integral, pdcr_contrast, sample_grid_positions
from localdisc.nets import UNet, UNetConfig, UNetFeatures
from localdisc.nets.receptive_field import feature_size, layer_positions

CONFIG = UNetConfig(spatial_dims=2, encoder_channels=(3, 4, 5), decoder_channels=(4, 3))


def _features(config: UNetConfig, batch: int, shape: tuple[int, ...], dtype=torch.float64) -> UNetFeatures:
    depth = len(config.encoder_channels)
    enc = [torch.randn(batch, c, *[feature_size(n, i) for n in shape], dtype=dtype) for i, c in enumerate(config.encoder_channels)]
    dec = [torch.randn(batch, c, *[feature_size(n, depth - 2 - j) for n in shape], dtype=dtype) for j, c in enumerate(config.decoder_channels)]
    return UNetFeatures(encoder=enc, decoder=dec, trunk=dec[-1])


def _ref_phi(labels: np.ndarray, num_classes: int, pos: tuple[int, ...], axes, window: int) -> np.ndarray:
    """Per-class fraction by looping over the pixels of the window (indexed by class id)."""
    ranges = []
    for a, (center, lo, hi) in enumerate(axes):
        n = labels.shape[a]
        if window == 0:
            ranges.append(range(lo[pos[a]], hi[pos[a]] + 1))
        else:
            c = min(max(center[pos[a]], 0), n - 1)
            ranges.append([p for p in range(n) if abs(p - c) <= window / 2])
    counts = np.zeros(num_classes)
    total = 0
    for p in itertools.product(*ranges):
        total += 1
        if 0 <= labels[p] < num_classes:
            counts[labels[p]] += 1
    return counts / total


def _ref_loss(z: np.ndarray, phi: np.ndarray, tau: float) -> float:
    """z (N, D), phi (W, N, C): -mean_{i != j} log(exp(a s) / sum_{k != i} exp(d s)), mean over W."""
    n = len(z)
    out = []
    for w in range(phi.shape[0]):
        terms = []
        for i in range(n):
            def sim(j):
                return float(z[i] @ z[j] / np.linalg.norm(z[i]) / np.linalg.norm(z[j]) / tau)

            def aff(j):
                return 1 - 0.5 * np.abs(phi[w, i] - phi[w, j]).sum()

            den = sum(math.exp((1 - aff(k)) * sim(k)) for k in range(n) if k != i)
            for j in range(n):
                if j != i:
                    terms.append(-(aff(j) * sim(j) - math.log(den)))
        out.append(np.mean(terms))
    return float(np.mean(out))


def _all_positions(shape):
    return [p for p in itertools.product(*[range(n) for n in shape])]


@pytest.mark.parametrize("dims,shape,layer", [(2, (9, 11), "decoder.1"), (2, (13, 10), "decoder.0"), (3, (5, 6, 7), "decoder.0")])
def test_descriptors_match_loop_reference(dims, shape, layer):
    config = UNetConfig(spatial_dims=dims, encoder_channels=(2, 2, 2), decoder_channels=(2, 2))
    labels = torch.randint(0, 4, (2, *shape))
    labels[0, :6] = torch.randint(1, 4, labels[0, :6].shape)  # windows without background
    labels[1] = torch.randint(2, 4, shape)  # classes 0, 1 absent: ids, not order of appearance
    labels[1].view(-1)[0] = 255  # an ignore label counts as a pixel but no class
    windows = (0, 5, 4, 9)
    pdcr = PDCRLoss(config, num_classes=4, layers=(layer,), vectors_per_layer=10_000, windows=windows)
    feats = _features(config, 2, shape)
    fmap = feats.decoder[int(layer.split(".")[1])]
    integral = label_integral(labels, 4)
    z, phi = pdcr.sample(fmap, layer, integral, shape)
    axes = layer_positions(3, (), layer, shape)
    positions = _all_positions(fmap.shape[2:])  # every position, in order (K >= map size)
    assert phi.shape == (len(windows), 2, len(positions), 4)
    np_labels = labels.numpy()
    for b in range(2):
        for k, pos in enumerate(positions):
            torch.testing.assert_close(z[b, k], fmap[(b, slice(None), *pos)])
            for w, window in enumerate(windows):
                ref = _ref_phi(np_labels[b], 4, pos, axes, window)
                np.testing.assert_allclose(phi[w, b, k].numpy(), ref, atol=1e-12, err_msg=f"{b} {pos} {window}")
    assert (phi[:, 1, :, :2] == 0).all()
    assert (phi[1, 0, 0, 0] == 0) and (phi[1, 0, 0].sum() - 1).abs() < 1e-12  # top-left border window, no background


def test_affinity_against_loop():
    phi_a = torch.rand(3, 7, 5, dtype=torch.float64).softmax(-1)
    phi_b = torch.rand(3, 4, 5, dtype=torch.float64).softmax(-1)
    a = affinity(phi_a, phi_b)
    for w, i, j in itertools.product(range(3), range(7), range(4)):
        ref = 1 - 0.5 * sum(abs(float(phi_a[w, i, c] - phi_b[w, j, c])) for c in range(5))
        assert float(a[w, i, j]) == pytest.approx(ref, abs=1e-12)
    assert (a >= 0).all() and (a <= 1).all()
    one_hot = torch.eye(5, dtype=torch.float64)[None]
    torch.testing.assert_close(affinity(one_hot, one_hot), one_hot)  # same class 1, different 0


def test_contrast_value_and_gradient_against_loop():
    z = torch.randn(1, 9, 6, dtype=torch.float64, requires_grad=True)
    phi = torch.rand(2, 1, 9, 3, dtype=torch.float64).softmax(-1)
    loss = pdcr_contrast(z, z, affinity(phi, phi), tau=0.2, exclude_self=True)
    assert float(loss.detach()) == pytest.approx(_ref_loss(z[0].detach().numpy(), phi[:, 0].numpy(), 0.2), rel=1e-10)
    (grad,) = torch.autograd.grad(loss, z)

    def ref_fn(zz):  # the same loop in torch float64 for a reference gradient
        zn = zz[0] / zz[0].norm(dim=-1, keepdim=True)
        terms = []
        for w in range(2):
            for i in range(9):
                a = [1 - 0.5 * (phi[w, 0, i] - phi[w, 0, j]).abs().sum() for j in range(9)]
                s = [zn[i] @ zn[j] / 0.2 for j in range(9)]
                den = torch.logsumexp(torch.stack([(1 - a[k]) * s[k] for k in range(9) if k != i]), 0)
                terms += [den - a[j] * s[j] for j in range(9) if j != i]
        return torch.stack(terms).mean()

    (ref_grad,) = torch.autograd.grad(ref_fn(z), z)
    torch.testing.assert_close(grad, ref_grad, rtol=1e-9, atol=1e-12)


def test_module_loss_against_loop_reference():
    shape = (10, 9)
    labels = torch.randint(0, 3, (2, *shape))
    feats = _features(CONFIG, 2, shape)
    pdcr = PDCRLoss(CONFIG, num_classes=3, layers=("decoder.0",), vectors_per_layer=1000, windows=(0, 5), tau=0.1)
    loss = pdcr(feats, labels)
    axes = layer_positions(3, (), "decoder.0", shape)
    fmap = feats.decoder[0]
    zs, phis = [], []
    for b in range(2):  # pairs across the batch
        for pos in _all_positions(fmap.shape[2:]):
            zs.append(fmap[(b, slice(None), *pos)].numpy())
            phis.append([_ref_phi(labels[b].numpy(), 3, pos, axes, w) for w in (0, 5)])
    ref = _ref_loss(np.stack(zs), np.stack(phis).transpose(1, 0, 2), 0.1)
    assert float(loss) == pytest.approx(ref, rel=1e-9)
    # per image: the mean of each image's own loss
    per_image = PDCRLoss(CONFIG, num_classes=3, layers=("decoder.0",), vectors_per_layer=1000, windows=(0, 5), pairs="image")
    n = len(zs) // 2
    ref_img = np.mean([_ref_loss(np.stack(zs[b * n:(b + 1) * n]), np.stack(phis[b * n:(b + 1) * n]).transpose(1, 0, 2), 0.1) for b in range(2)])
    assert float(per_image(feats, labels)) == pytest.approx(ref_img, rel=1e-9)


def _cos(v: torch.Tensor, i: int, j: int) -> float:
    return float(torch.cosine_similarity(v[0, i], v[0, j], dim=0))


def test_gradient_pulls_similar_and_pushes_dissimilar():
    """Orthonormal start: to first order a pair's cosine moves only by its own force, so one
    gradient step must raise it for same-label pairs (a = 1) and lower it for a = 0 pairs.
    Swapping a and d (the reference 2D bug) fails this test."""
    classes = torch.tensor([0, 0, 1, 1, 2])
    phi = torch.nn.functional.one_hot(classes, 3).double()[None, None]  # (W=1, G=1, N=5, C)
    for seed in range(3):
        torch.manual_seed(seed)
        q, _ = torch.linalg.qr(torch.randn(8, 8, dtype=torch.float64))
        z = q[:5].clone()[None].requires_grad_(True)
        pdcr_contrast(z, z, affinity(phi, phi), tau=0.1, exclude_self=True).backward()
        z2 = z.detach() - 1e-3 * z.grad
        for i, j in itertools.combinations(range(5), 2):
            moved = _cos(z2, i, j) - _cos(z.detach(), i, j)
            assert (moved > 0) if classes[i] == classes[j] else (moved < 0), (i, j, moved)


def test_training_z_separates_classes():
    """A few hundred steps on free vectors: same-class cosines -> 1, cross-class ones drop."""
    torch.manual_seed(0)
    classes = torch.tensor([0, 0, 0, 1, 1, 2, 2, 2])
    phi = torch.nn.functional.one_hot(classes, 3).double()[None, None]
    z = torch.randn(1, 8, 16, dtype=torch.float64, requires_grad=True)
    same = (classes[:, None] == classes[None]) & ~torch.eye(8, dtype=torch.bool)
    diff = classes[:, None] != classes[None]

    def cos_matrix():
        zn = torch.nn.functional.normalize(z.detach()[0], dim=-1)
        return zn @ zn.T

    before = cos_matrix()
    opt = torch.optim.SGD([z], lr=0.1)
    for _ in range(200):
        opt.zero_grad()
        pdcr_contrast(z, z, affinity(phi, phi), tau=0.1, exclude_self=True).backward()
        opt.step()
    after = cos_matrix()
    assert after[same].min() > 0.7 and after[same].mean() > before[same].mean() + 0.5
    assert after[diff].mean() < min(before[diff].mean(), -0.2) and after[diff].max() < 0.2


def test_sampling_covers_map_and_follows_torch_rng():
    torch.manual_seed(3)
    pos = sample_grid_positions((20, 30), 12, 4, torch.device("cpu"))
    assert pos.shape == (4, 12, 2)
    assert (pos >= 0).all() and (pos[..., 0] < 20).all() and (pos[..., 1] < 30).all()
    for b in range(4):
        assert len({tuple(p) for p in pos[b].tolist()}) == 12  # distinct (one per cell)
    assert not torch.equal(pos[0], pos[1])
    torch.manual_seed(3)
    torch.testing.assert_close(sample_grid_positions((20, 30), 12, 4, torch.device("cpu")), pos)
    # a grid of K cells: every cell gets exactly one sample
    pos = sample_grid_positions((8, 8), 16, 1, torch.device("cpu"))[0]
    cells = {(r // 2, c // 2) for r, c in pos.tolist()}
    assert len(cells) == 16


def test_unet_end_to_end_2d_3d_and_bfloat16():
    for dims, shape in [(2, (24, 20)), (3, (8, 9, 8))]:
        config = UNetConfig(spatial_dims=dims, encoder_channels=(4, 4, 4), decoder_channels=(4, 4), uafs_stages=(1,))
        net = UNet(config, out_channels=2)
        labels = torch.randint(0, 2, (2, *shape))
        pdcr = PDCRLoss(net.config, num_classes=2, layers=("decoder.0", "decoder.1"), vectors_per_layer=16, cross_layer=True)
        assert list(pdcr.parameters()) == [] and pdcr.state_dict() == {}
        loss = pdcr(net.forward_features(torch.rand(2, 1, *shape)), labels)
        assert loss.dim() == 0 and torch.isfinite(loss)
        loss.backward()
        assert net.encoder[0][0].weight.grad.abs().sum() > 0
    with torch.autocast("cpu", dtype=torch.bfloat16):
        loss = pdcr(net.forward_features(torch.rand(2, 1, *shape)), labels)
    assert loss.dtype == torch.float32 and torch.isfinite(loss)


def test_bad_inputs():
    with pytest.raises(ConfigError, match="unknown layer"):
        PDCRLoss(CONFIG, num_classes=2, layers=("decoder.7",))
    with pytest.raises(ConfigError, match="equal widths"):
        PDCRLoss(CONFIG, num_classes=2, layers=("decoder.0", "decoder.1"), cross_layer=True)
    with pytest.raises(ConfigError, match="tau"):
        PDCRLoss(CONFIG, num_classes=2, tau=0.0, layers=("decoder.1",))
    pdcr = PDCRLoss(CONFIG, num_classes=2, layers=("decoder.1",))
    feats = _features(CONFIG, 2, (8, 8))
    with pytest.raises(ValueError, match="spatial dims"):
        pdcr(feats, torch.zeros(2, 8, 8, 1, dtype=torch.long))
    with pytest.raises(ValueError, match="expected"):
        pdcr(feats, torch.zeros(2, 16, 16, dtype=torch.long))  # labels not at input resolution
