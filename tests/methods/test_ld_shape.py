"""Shape-guided LD: one 2D step is finite; D learns only from L_D, the generator only from L_adv."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
import torch

from localdisc.methods import get_method
from localdisc.methods.ld_shape import ShapeGuidedLD, ShapeLDConfig, adversarial_terms, discriminator_input, load_prior_masks
from localdisc.nets import UNet, UNetConfig
from localdisc.nets.discriminator import MaskDiscriminator

TINY = dict(encoder_channels=(4, 8, 8), decoder_channels=(8, 4))


def _model(nd=2, **kw) -> ShapeGuidedLD:
    kw = {"prior_masks": "simulate:vessels:4", **kw}
    cfg = ShapeLDConfig(stage="2", embed_dim=4, grid=2, disc_width=4, disc_layers=2, **kw)
    m = ShapeGuidedLD(UNet(UNetConfig(spatial_dims=nd, in_channels=1, **TINY)), cfg)
    size = (32, 32) if nd == 2 else (16, 16, 16)
    m.prepare(SimpleNamespace(dataset=[{"image": torch.zeros(1, *size)}], device=torch.device("cpu")))
    return m


def test_registered():
    assert get_method("ld-shape") is ShapeGuidedLD
    assert ShapeLDConfig().num_clusters == 8


def test_one_training_step_2d_gradients_reach_generator_and_discriminator():
    m = _model()
    loss, logs = m.training_step(torch.rand(2, 1, 32, 32))
    assert torch.isfinite(loss) and {"loss_disc", "loss_adv", "loss_ld"} <= set(logs)
    loss.backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in m.discriminator.parameters())
    assert m.cluster_head[-1].weight.grad.abs().sum() > 0
    assert m.backbone.encoder[0][0].weight.grad.abs().sum() > 0


def test_generator_term_gives_no_gradient_to_discriminator():
    torch.manual_seed(0)
    d = MaskDiscriminator(2, width=4, num_layers=2)
    a0 = torch.rand(3, 1, 16, 16, requires_grad=True)
    priors = torch.rand(3, 1, 16, 16)
    d_loss, g_loss = adversarial_terms(a0, priors, d)
    grads = torch.autograd.grad(g_loss, list(d.parameters()) + [a0], allow_unused=True)
    assert all(g is None for g in grads[:-1]) and grads[-1].abs().sum() > 0
    # the discriminator loss reaches D but not the generator's output
    grads = torch.autograd.grad(d_loss, list(d.parameters()) + [a0], allow_unused=True)
    assert all(g is not None for g in grads[:-1]) and grads[-1] is None
    # values: L_G is BCE(D(a0), 1) with D's current weights
    logits = d(a0)
    torch.testing.assert_close(g_loss, torch.nn.functional.softplus(-logits).mean())


def test_one_step_3d_and_prediction_rules():
    m = _model(nd=3, prior_masks="simulate:tubes3d:2")
    loss, _ = m.training_step(torch.rand(2, 1, 16, 16, 16))
    assert torch.isfinite(loss)
    m.eval()
    x = torch.rand(1, 1, 16, 16, 16)
    for rule in ("threshold", "argmax", "prototype"):
        p = m.structure_probability(x, rule=rule)
        assert p.shape == (1, 16, 16, 16) and float(p.min()) >= 0 and float(p.max()) <= 1
    a = m.assign(x)
    torch.testing.assert_close(m.structure_probability(x, rule="argmax"), (a.argmax(1) == 0).float())


@pytest.mark.parametrize("mode", ["argmax", "threshold", "soft"])
def test_discriminator_input_values_and_straight_through_gradient(mode):
    torch.manual_seed(0)
    logits = torch.randn(2, 4, 6, 5, requires_grad=True)
    a = torch.sigmoid(logits) / torch.sigmoid(logits).sum(1, keepdim=True)
    x = discriminator_input(a, mode)
    expect = {"argmax": (a.argmax(1, keepdim=True) == 0).float(), "threshold": (a[:, :1] > 0.5).float(), "soft": a[:, :1]}[mode]
    torch.testing.assert_close(x, expect.detach())
    if mode != "soft":
        v = x.detach()
        assert torch.all((v.abs() < 1e-6) | ((v - 1).abs() < 1e-6))  # binary up to float rounding
    # straight-through: d(sum w*x)/d(a) = w on channel 0 and 0 elsewhere, whatever the mode
    w = torch.randn_like(x)
    g = torch.autograd.grad((w * x).sum(), a)[0]
    torch.testing.assert_close(g[:, :1], w)
    assert g[:, 1:].abs().sum() == 0


def test_disc_input_is_validated():
    from localdisc.errors import ConfigError

    with pytest.raises(ConfigError, match="disc_input"):
        ShapeLDConfig(disc_input="sharp")


def test_prior_folder_and_errors(tmp_path):
    from PIL import Image

    img = np.zeros((20, 24), np.uint8)
    img[5:8, :] = 255  # 3 rows: halving by interpolation would leave fractional edge values
    Image.fromarray(img).save(tmp_path / "a.png")
    pri = load_prior_masks(str(tmp_path), (10, 12))
    assert pri.shape == (1, 1, 10, 12) and pri.max() == 1.0
    assert set(pri.unique().tolist()) == {0.0, 1.0}  # binary like the maps D judges
    from localdisc.errors import DataError

    with pytest.raises(DataError):
        load_prior_masks(str(tmp_path / "missing"), (10, 12))
    with pytest.raises(DataError):
        load_prior_masks(str(tmp_path), (8, 8, 8))


def test_simulated_priors_drawn_at_the_images_own_size(tmp_path):
    """simulate:KIND priors are drawn at the stored images' size and resized like label masks."""
    from PIL import Image

    from localdisc.data.datasets import ImageDataset, resize_labels
    from localdisc.data.records import Sample
    from localdisc.data.simulate import simulate
    from localdisc.methods.ld_shape import _native_size

    pri = load_prior_masks("simulate:retina:3", (32, 32), seed=2, simulate_size=(64, 64))
    ref = torch.stack([resize_labels(torch.from_numpy(m.astype("float32")), (32, 32)) for m in simulate("retina", 3, (64, 64), seed=2)])[:, None]
    assert torch.equal(pri, ref) and set(pri.unique().tolist()) <= {0.0, 1.0}
    assert not torch.equal(pri, load_prior_masks("simulate:retina:3", (32, 32), seed=2))  # drawn at 32x32: other masks

    Image.fromarray(np.zeros((48, 40), np.uint8)).save(tmp_path / "a.png")
    ds = ImageDataset([Sample(id="a", image=str(tmp_path / "a.png"))], (16, 16), 1)
    assert _native_size(ds, (16, 16)) == (48, 40)
    assert _native_size(ds, (8, 8)) == (32, 27)  # capped at 4x the training size, aspect kept
    assert _native_size(object(), (16, 16)) == (16, 16)


@pytest.mark.parametrize("disc_input", ["argmax", "threshold", "soft"])
def test_warped_priors_stay_binary_when_d_judges_hard_maps(disc_input):
    """The fake map D sees is exactly binary for argmax/threshold, so the warped priors must be too:
    soft edges from a bilinear warp would let D tell them apart by value alone."""
    torch.manual_seed(0)
    m = _model(disc_input=disc_input, prior_masks="simulate:vessels:8")
    p = m.sample_priors(8, (32, 32))
    fractional = ((p > 0) & (p < 1)).float().mean().item()
    assert p.sum() > 0
    assert (fractional == 0.0) if disc_input != "soft" else (fractional > 0.0)
