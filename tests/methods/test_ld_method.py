"""LD method: heads, stages, gradients, two-stage schedule and transfer by name."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from localdisc.errors import ConfigError
from localdisc.methods import get_method
from localdisc.methods.ld import LDConfig, LocalDiscrimination
from localdisc.nets import UNet, UNetConfig
from localdisc.nets.transfer import load_pretrained_into
from localdisc.runtime.checkpoint import load_weights
from localdisc.train.pretrain import PretrainConfig, run_pretraining

TINY = dict(encoder_channels=(4, 8, 8), decoder_channels=(8, 8))


def model(stage: str, d: int = 2, **kw) -> LocalDiscrimination:
    return LocalDiscrimination(UNet(UNetConfig(spatial_dims=d, in_channels=1, **TINY)), LDConfig(stage=stage, grid=4, **kw))


def grads(m: torch.nn.Module, prefix: str) -> list:
    return [p.grad for n, p in m.named_parameters() if n.startswith(prefix)]


def test_registered():
    assert get_method("ld") is LocalDiscrimination


@pytest.mark.parametrize("d,size", [(2, (16, 16)), (3, (8, 8, 8))])
def test_stage2_gradients_reach_both_heads_and_backbone(d, size):
    m = model("2", d)
    out = m.forward_views(torch.rand(4, 1, *size))
    assert out["embed"].shape == (10, 32, *size) and out["assign"].shape == (10, 16, *size) and out["B"] == 2
    terms = m.loss_terms(out)
    assert set(terms) == {"pd", "mix", "ld", "ent"}
    sum(terms.values()).backward()
    for prefix in ("embed_head.", "cluster_head.", "backbone.encoder.0."):
        gs = grads(m, prefix)
        assert gs and all(g is not None and torch.isfinite(g).all() for g in gs) and any(g.abs().sum() > 0 for g in gs), prefix


def test_stage1_uses_no_clustering_head():
    m = model("1")
    assert m.cluster_head is None and not any(n.startswith("cluster_head") for n in m.state_dict())
    loss, logs = m.training_step(torch.rand(2, 1, 16, 16))
    assert set(logs) == {"loss_pd", "loss_mix"}
    loss.backward()
    assert all(g is not None for g in grads(m, "embed_head."))
    with pytest.raises(ConfigError, match="stage 1"):
        m.assign(torch.rand(1, 1, 16, 16))


def test_weights_and_balance_term():
    m = model("2", w_balance=1.0, w_ld=0.0)
    torch.manual_seed(0)
    out = m.forward_views(torch.rand(2, 1, 16, 16))
    terms = m.loss_terms(out)
    assert "balance" in terms and float(terms["ld"].detach()) == 0.0


def test_embed_and_assign_are_normalized():
    m = model("2").eval()
    with torch.no_grad():
        v, a = m.embed(torch.rand(2, 1, 16, 16)), m.assign(torch.rand(2, 1, 16, 16))
    torch.testing.assert_close(v.norm(dim=1), torch.ones(2, 16, 16))
    torch.testing.assert_close(a.sum(1), torch.ones(2, 16, 16))
    assert (a >= 0).all()


def test_stage_both_cannot_be_built_directly():
    with pytest.raises(ConfigError, match="run_pretraining"):
        model("both")
    with pytest.raises(ConfigError):
        LDConfig(stage="3")


def test_save_pictures(tmp_path):
    m = model("2").eval()
    with torch.no_grad():
        m.save_pictures(torch.rand(3, 1, 16, 16), tmp_path)
    img = np.asarray(Image.open(tmp_path / "embeddings.png"))
    side = 160  # 16-pixel tiles enlarged 10x so that the column titles fit
    assert img.shape == (28 + 3 * side + 2 * 4, 3 * side + 2 * 4, 3)
    for j in range(3):  # a title over every column: input | embedding | clusters
        assert (img[:28, j * (side + 4) : j * (side + 4) + side] < 128).any()


def write_pngs(folder: Path, n: int = 4, size: int = 32) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    for i in range(n):
        Image.fromarray((rng.random((size, size)) * 255).astype(np.uint8)).save(folder / f"img{i}.png")
    return folder


def test_two_stage_schedule_then_transfer_by_name(tmp_path):
    data = write_pngs(tmp_path / "data")
    cfg = PretrainConfig(data=str(data), out=str(tmp_path / "run"), steps=3, batch_size=2, image_size=(32, 32), lr=0.0, picture_every=0, log_every=1, **TINY)
    out = run_pretraining(cfg, LDConfig(stage="both", stage1_steps=2, grid=4))
    s1 = load_weights(out / "stage1" / "model.safetensors")
    s2 = load_weights(out / "model.safetensors")
    assert not any(k.startswith("cluster_head") for k in s1) and any(k.startswith("cluster_head") for k in s2)
    # lr=0: parameters (not BN statistics) of stage 2 must equal stage 1's, i.e. init by name worked
    params = [n for n, _ in model("2").named_parameters() if not n.startswith("cluster_head")]
    for n in params:
        assert torch.equal(s1[n], s2[n]), n
    assert (out / "pictures" / "embeddings.png").is_file()
    header = (out / "metrics.csv").read_text().splitlines()[0]
    assert "loss_ld" in header and "loss_ld" not in (out / "stage1" / "metrics.csv").read_text().splitlines()[0]

    from localdisc.methods import load_pretrained_method

    loaded = load_pretrained_method(out)
    assert loaded.cfg.stage == "2" and loaded.assign(torch.rand(1, 1, 32, 32)).shape == (1, 16, 32, 32)

    seg = UNet(UNetConfig(spatial_dims=2, in_channels=1, **TINY), out_channels=2)
    names = load_pretrained_into(seg, out)
    assert names == sorted(seg.encoder_parameter_names())
    bb = load_weights(out / "backbone.safetensors")
    assert all(torch.equal(seg.state_dict()[n], bb[n]) for n in names)
    with pytest.raises(ConfigError, match="shape mismatch"):
        load_pretrained_into(UNet(UNetConfig(spatial_dims=2, in_channels=1, encoder_channels=(4, 16, 8), decoder_channels=(8, 8))), out)

    # stage 2 from stage 1 with another embedding size: loud failure, not a silent partial copy
    bad = replace(cfg, out=str(tmp_path / "bad"), init=str(out / "stage1"), steps=1)
    with pytest.raises(ConfigError, match="shape mismatch"):
        run_pretraining(bad, LDConfig(stage="2", grid=4, embed_dim=16))
    # an existing run is not overwritten silently
    with pytest.raises(ConfigError, match="already exists"):
        run_pretraining(cfg, LDConfig(stage="both", stage1_steps=2, grid=4))
