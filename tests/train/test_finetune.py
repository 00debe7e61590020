import json

import pytest
import torch

from localdisc.nets import UNet, UNetConfig
from localdisc.nets.transfer import save_backbone
from localdisc.runtime.checkpoint import load_weights
from localdisc.train.augment import AugmentConfig, augment_batch
from localdisc.train.finetune import FinetuneConfig, finetune, sample_patches

TINY = dict(encoder_channels=(4, 8, 8), decoder_channels=(8, 8))


@pytest.fixture(autouse=True)
def _cache(tmp_path_factory, monkeypatch):
    monkeypatch.setenv("LOCALDISC_CACHE", str(tmp_path_factory.getbasetemp() / "cache"))


def tiny_cfg(tmp_path, **kw) -> FinetuneConfig:
    base = dict(data="synthetic-fundus:10:32x32", out=str(tmp_path / "run"), steps=4, batch_size=2, image_size=(32, 32),
                eval_every=2, checkpoint_every=2, log_every=1, **TINY)
    base.update(kw)
    return FinetuneConfig(**base)


# ---------------------------------------------------------------- patches and augmentation


def test_patches_shape_and_foreground_bias():
    torch.manual_seed(0)
    x = torch.rand(6, 2, 40, 30)
    y = torch.zeros(6, 40, 30, dtype=torch.long)
    y[:, 35, 2] = 1  # a single foreground pixel in a corner
    px, py = sample_patches(x, y, (8, 6), fg_prob=1.0)
    assert px.shape == (6, 2, 8, 6) and py.shape == (6, 8, 6)
    assert (py.flatten(1).amax(1) == 1).all()  # every patch holds the foreground pixel
    # patches are exact crops of the image
    b = 0
    hits = [(i, j) for i in range(33) for j in range(25) if torch.equal(x[b, :, i:i + 8, j:j + 6], px[b])]
    assert len(hits) == 1 and torch.equal(y[b, hits[0][0]:hits[0][0] + 8, hits[0][1]:hits[0][1] + 6], py[b])


def test_flip_swaps_paired_labels():
    x = torch.rand(3, 1, 5, 6)
    y = torch.randint(0, 4, (3, 5, 6))
    cfg = AugmentConfig(flip_prob=1.0, flip_axes=(1,), affine_prob=0.0, intensity=0.0, gamma=0.0)
    ax, ay = augment_batch(x, y, cfg, flip_pairs=[(1, 2)])
    assert torch.equal(ax, x.flip(-1))
    want = y.flip(-1).clone()
    want[y.flip(-1) == 1], want[y.flip(-1) == 2] = 2, 1
    assert torch.equal(ay, want)
    # vertical flips do not swap left/right
    _, ay = augment_batch(x, y, AugmentConfig(flip_prob=1.0, flip_axes=(0,), affine_prob=0.0, intensity=0.0, gamma=0.0), flip_pairs=[(1, 2)])
    assert torch.equal(ay, y.flip(-2))


@pytest.mark.parametrize("shape", [(2, 1, 24, 32), (2, 1, 12, 16, 20)])
def test_affine_moves_image_and_labels_together(shape):
    torch.manual_seed(1)
    y = torch.zeros(shape[:1] + shape[2:], dtype=torch.long)
    y[(slice(None),) + tuple(slice(s // 4, 3 * s // 4) for s in shape[2:])] = 1
    x = y[:, None].float()
    cfg = AugmentConfig(flip_prob=0.5, affine_prob=1.0, rotate_deg=20, scale=0.2, intensity=0.0, gamma=0.0)
    ax, ay = augment_batch(x, y, cfg)
    assert ax.shape == x.shape and ay.shape == y.shape and ay.dtype == torch.long
    assert set(ay.unique().tolist()) <= {0, 1}
    assert not torch.equal(ay, y)  # something moved
    agree = ((ax[:, 0] > 0.5).long() == ay).float().mean()
    assert agree > 0.97  # bilinear image and nearest labels stay aligned


def test_augment_is_seeded_by_global_rng():
    x, y = torch.rand(2, 3, 16, 16), torch.randint(0, 2, (2, 16, 16))
    torch.manual_seed(5)
    a = augment_batch(x, y)
    torch.manual_seed(5)
    b = augment_batch(x, y)
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])


# ---------------------------------------------------------------- the loop


def test_finetune_run_folder(tmp_path):
    run = finetune(tiny_cfg(tmp_path, labels=3, patch_size=(16, 16)))
    for name in ("config.yaml", "metrics.csv", "model.safetensors", "best.safetensors", "model.json", "splits.json", "latest.json"):
        assert (run / name).is_file(), name
    info = json.loads((run / "model.json").read_text())
    assert info["num_classes"] == 2 and info["class_names"] == ["background", "vessel"] and info["in_channels"] == 3
    assert info["best_step"] in (2, 4)
    splits = json.loads((run / "splits.json").read_text())
    assert len(splits["train"]) == 3 and splits["val"] and splits["test"]
    assert not set(splits["val"]) & set(splits["test"]) and not set(splits["train"]) & set(splits["val"])
    header = (run / "metrics.csv").read_text().splitlines()[0]
    assert "loss" in header and "val_dice_vessel" in header
    best = load_weights(run / "best.safetensors")
    unet = UNet(UNetConfig(**info["unet"]), out_channels=2)
    unet.load_state_dict(best)  # loadable into the network model.json describes


def test_label_budget_is_nested_and_val_fixed(tmp_path):
    s2 = json.loads((finetune(tiny_cfg(tmp_path / "a", labels=2, steps=1)) / "splits.json").read_text())
    s4 = json.loads((finetune(tiny_cfg(tmp_path / "b", labels=4, steps=1)) / "splits.json").read_text())
    assert set(s2["train"]) < set(s4["train"]) and s2["val"] == s4["val"] and s2["test"] == s4["test"]


def test_transfer_and_frozen_encoder(tmp_path):
    torch.manual_seed(3)
    backbone = UNet(UNetConfig(in_channels=3, **TINY))
    for m in backbone.modules():  # pretrained statistics, not BatchNorm's default (0, 1): a fresh BN would match those
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-1, 1)
            m.running_var.uniform_(0.5, 2)
    pre = tmp_path / "pre"
    save_backbone(backbone, pre, "fake")
    run = finetune(tiny_cfg(tmp_path, init=str(pre), transfer="encoder", freeze_encoder_steps=4, uafs_stages=(1,)))
    report = json.loads((run / "transfer.json").read_text())
    assert report["transferred"] and all(k.startswith("encoder.") for k in report["transferred"])
    assert any(k.startswith("decoder.") for k in report["not_transferred"])
    final = load_weights(run / "model.safetensors")
    src = dict(backbone.named_parameters())
    for k in (n for n in src if n.startswith("encoder.")):
        assert torch.equal(final[k], src[k].detach()), k  # frozen for all 4 steps
    stats = {k: v for k, v in backbone.state_dict().items() if k.startswith("encoder.") and ("running_" in k or "num_batches" in k)}
    assert stats and all(torch.equal(final[k], v) for k, v in stats.items())  # BN statistics frozen too
    assert any(not torch.equal(final[k], src[k].detach()) for k in src if k.startswith("decoder."))
    assert any(k.startswith("decoder_gates.1.") for k in final)


def test_transfer_protocol_warmup_and_encoder_lr_scale(tmp_path):
    """--freeze-encoder-steps 2 --encoder-lr-scale 0.1: the encoder (and its BN statistics) is
    frozen for 2 steps, then trains in its own Adam group at a tenth of the lr. The defaults
    (chosen on validation Dice) train every layer at one lr from step 0, random init too."""
    from localdisc.runtime.checkpoint import load_checkpoint

    torch.manual_seed(4)
    backbone = UNet(UNetConfig(in_channels=3, **TINY))
    pre = tmp_path / "pre"
    save_backbone(backbone, pre, "fake")
    run = finetune(tiny_cfg(tmp_path / "ld", init=str(pre), steps=4, checkpoint_every=2, eval_every=2, freeze_encoder_steps=2, encoder_lr_scale=0.1))
    report = json.loads((run / "transfer.json").read_text())
    assert report["freeze_encoder_steps"] == 2 and report["encoder_lr_scale"] == 0.1 and report["warmup_restart_from_best"]
    enc = [k for k, _ in backbone.named_parameters() if k.startswith("encoder.")]
    src = backbone.state_dict()
    warm, state, _ = load_checkpoint(run / "ckpt-00000002")
    assert all(torch.equal(warm["unet." + k], src[k]) for k in src if k.startswith("encoder."))  # weights and statistics
    groups = state["optimizer"]["param_groups"]
    assert [g["initial_lr"] for g in groups] == [pytest.approx(1e-3), pytest.approx(1e-4)]
    assert len(groups[1]["params"]) == len(enc)  # the slow group is exactly the encoder
    final = load_weights(run / "model.safetensors")
    assert any(not torch.equal(final[k], src[k]) for k in enc)  # then the encoder does train
    default = finetune(tiny_cfg(tmp_path / "default", init=str(pre), steps=2, checkpoint_every=2))
    report = json.loads((default / "transfer.json").read_text())
    assert report["freeze_encoder_steps"] == 0 and report["encoder_lr_scale"] == 1.0
    _, state, _ = load_checkpoint(default / "ckpt-00000002")
    assert [g["initial_lr"] for g in state["optimizer"]["param_groups"]] == [pytest.approx(1e-3)] * 2


def test_pdcr_weight_and_reference_defaults():
    """loss = DiceCE + w * PDCR, so w changes the gradient; defaults are the reference's
    (tau 1.0 in 2D / 0.5 in 3D, vectors contrasted within each image, weight 0.01)."""
    from localdisc.losses.pdcr import PDCRLoss
    from localdisc.train.finetune import resolve_transfer_protocol
    from localdisc.train.finetune_model import Supervised

    cfg = FinetuneConfig(pdcr=True)
    resolve_transfer_protocol(cfg)
    assert (cfg.pdcr_tau, cfg.pdcr_pairs, cfg.pdcr_weight) == (1.0, "image", 0.01)
    cfg3 = FinetuneConfig(pdcr=True, image_size=(16, 16, 16))
    resolve_transfer_protocol(cfg3)
    assert cfg3.pdcr_tau == 0.5
    torch.manual_seed(0)
    unet = UNet(UNetConfig(in_channels=1, **TINY), out_channels=2)
    pdcr = PDCRLoss(unet.config, 2, layers=("decoder.1",), vectors_per_layer=8, windows=(3,), tau=1.0, pairs="image")
    x, y = torch.rand(2, 1, 16, 16), (torch.rand(2, 16, 16) > 0.5).long()
    grads = {}
    for w in (0.0, 0.5):
        unet.zero_grad()
        torch.manual_seed(1)  # same sampled vectors
        loss, logs = Supervised(unet, pdcr, w)(x, y)
        torch.testing.assert_close(loss.detach(), logs["seg_loss"] + w * logs["pdcr_loss"])
        loss.backward()
        grads[w] = unet.decoder[1][0].weight.grad.clone()
    assert float(logs["pdcr_loss"]) > 0 and not torch.allclose(grads[0.0], grads[0.5])


def test_pdcr_option_runs(tmp_path):
    pytest.importorskip("localdisc.losses.pdcr")
    run = finetune(tiny_cfg(tmp_path, steps=2, pdcr=True, pdcr_layers=("decoder.0", "decoder.1"), pdcr_vectors=8, pdcr_windows=(3,)))
    assert "pdcr_loss" in (run / "metrics.csv").read_text().splitlines()[0]


def test_3d_finetune(tmp_path):
    run = finetune(tiny_cfg(tmp_path, data="synthetic-3d:5:16x16x16", image_size=(16, 16, 16), patch_size=(8, 16, 16), steps=2))
    info = json.loads((run / "model.json").read_text())
    assert info["unet"]["spatial_dims"] == 3 and info["num_classes"] == 3
