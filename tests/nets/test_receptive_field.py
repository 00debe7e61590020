"""Receptive fields from the architecture vs an empirical gradient measurement on a real U-Net."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from localdisc.nets import UNet, UNetConfig
from localdisc.nets.receptive_field import (
    AxisRF,
    axis_receptive_fields,
    feature_size,
    layer_level,
    layer_positions,
    receptive_fields,
)


def _positive_net(config: UNetConfig, constant: bool = False) -> UNet:
    """Same geometry, but every path has a strictly positive gradient: positive weights and
    inputs keep ReLUs open, and average pooling (same windows as max pooling) spreads the
    gradient over the whole window instead of the argmax."""
    net = UNet(config).eval()
    with torch.no_grad():
        for m in net.modules():
            if isinstance(m, (torch.nn.Conv2d, torch.nn.Conv3d)):
                w = torch.ones_like(m.weight) if constant else m.weight.abs() + 0.05
                # averaging kernels keep activations O(1) through the whole network
                m.weight.copy_(w / w.flatten(1).sum(1).view(-1, *[1] * (w.dim() - 1)))
        for gate in (net.decoder_gates or {}).values():
            # keep the 2-way softmax away from saturation (H == 0) and from equal logits (dH = 0)
            last = gate.head[-1]
            last.weight.zero_()
            last.weight[0].fill_(0.5)
    pool = F.avg_pool2d if config.spatial_dims == 2 else F.avg_pool3d
    net._pool = lambda x: pool(x, 2, ceil_mode=True)
    return net


def _feature(features, layer: str) -> torch.Tensor:
    part, idx = layer.split(".")
    return getattr(features, part)[int(idx)]


def _gradients(net: UNet, shape: tuple[int, ...], layer: str, positions: list[tuple[int, ...]]) -> np.ndarray:
    """|d f[:, pos] / d x| for every position at once: one batch copy per position (eval-mode
    BN keeps the copies independent), so a single backward pass. Returns (P, *shape)."""
    x = torch.full((len(positions), net.config.in_channels, *shape), 0.5, dtype=torch.float64, requires_grad=True)
    f = _feature(net.double().forward_features(x), layer)
    torch.stack([f[(b, slice(None), *pos)].sum() for b, pos in enumerate(positions)]).sum().backward()
    return x.grad.abs().sum(1).numpy()


def _positions(n_feature: tuple[int, ...]) -> list[tuple[int, ...]]:
    """Corners, the middle and a couple of interior points (both parities)."""
    per_axis = [sorted({0, 1, n // 2, max(n - 2, 0), n - 1}) for n in n_feature]
    return list(itertools.product(*per_axis))


@pytest.mark.parametrize(
    "dims,shape,uafs,layers",
    [
        (2, (29, 38), (), ["encoder.0", "encoder.2", "decoder.0", "decoder.1"]),
        (2, (25, 20), (1,), ["decoder.1", "encoder.1"]),
        (3, (9, 11, 7), (), ["encoder.1", "decoder.1"]),
    ],
)
def test_extents_match_gradient_support(dims, shape, uafs, layers):
    config = UNetConfig(spatial_dims=dims, encoder_channels=(2, 2, 2), decoder_channels=(2, 2), uafs_stages=uafs)
    net = _positive_net(config)
    for layer in layers:
        axes = layer_positions(3, uafs, layer, shape)
        n_feature = tuple(len(c) for c, _, _ in axes)
        positions = _positions(n_feature)
        for pos, g in zip(positions, _gradients(net, shape, layer, positions)):
            support = np.nonzero(g > 0)
            for axis, (center, lo, hi) in enumerate(axes):
                assert support[axis].min() == lo[pos[axis]], (layer, pos, axis)
                assert support[axis].max() == hi[pos[axis]], (layer, pos, axis)
            # the RF is a box (the up-sampled path contains the skip path): no holes
            box = tuple(slice(lo[p], hi[p] + 1) for (_, lo, hi), p in zip(axes, pos))
            assert (g[box] > 0).all()


def test_real_maxpool_net_gradient_stays_inside_rf():
    config = UNetConfig(spatial_dims=2, encoder_channels=(3, 3, 3), decoder_channels=(3, 3))
    net = UNet(config).eval()
    shape = (21, 26)
    for layer in ("encoder.2", "decoder.0", "decoder.1"):
        axes = layer_positions(3, (), layer, shape)
        pos = (len(axes[0][0]) // 2, 1)
        x = torch.rand(1, 1, *shape, requires_grad=True)
        _feature(net.forward_features(x), layer)[(0, slice(None), *pos)].sum().backward()
        rows, cols = np.nonzero(x.grad[0, 0].numpy())
        assert len(rows) > 0
        for idx, (_, lo, hi) in zip((rows, cols), axes):
            p = pos[0] if idx is rows else pos[1]
            assert lo[p] <= idx.min() and idx.max() <= hi[p]


def test_encoder_centers_equal_gradient_centroid():
    """With constant weights the encoder gradient is symmetric about the RF center."""
    config = UNetConfig(spatial_dims=2, encoder_channels=(1, 1, 1), decoder_channels=(1, 1))
    net = _positive_net(config, constant=True)
    shape = (64, 64)
    for layer in ("encoder.1", "encoder.2"):
        axes = layer_positions(3, (), layer, shape)
        positions = [(5, 6), (7, 8)]
        for pos, g in zip(positions, _gradients(net, shape, layer, positions)):
            grid = np.indices(g.shape)
            for axis, (center, _, _) in enumerate(axes):
                centroid = (grid[axis] * g).sum() / g.sum()
                assert centroid == pytest.approx(center[pos[axis]], abs=1e-9)


def test_analytic_tables():
    rf = axis_receptive_fields(5, ())
    assert [rf[f"encoder.{i}"].stride for i in range(5)] == [1, 2, 4, 8, 16]
    assert rf["encoder.0"] == AxisRF(1, (-2,), (2,))  # two 3x3 convs: 5 pixels
    assert rf["encoder.1"].offset == (0.5,) and rf["encoder.1"].size == 14
    assert rf["decoder.3"].stride == 1 and rf["decoder.3"].period > 1  # nearest up-sampling parity
    # a UAFS gate adds one conv3 at its stage
    _, lo, hi = rf["decoder.3"].positions(10_000, 64)
    _, lo_g, hi_g = axis_receptive_fields(5, (3,))["decoder.3"].positions(10_000, 64)
    assert (lo_g <= lo).all() and (hi_g >= hi).all() and (hi_g - lo_g).sum() > (hi - lo).sum()
    assert receptive_fields(UNetConfig()) is rf  # cached
    assert feature_size(29, 2) == 8 and layer_level("decoder.0", 5) == 3
    with pytest.raises(ValueError, match="unknown layer"):
        layer_level("decoder.4", 5)
