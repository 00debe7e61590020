"""benchmarks/discover_vessels.py (localdisc.tasks.shape_runs): the Dice-vs-steps curve grows ONE run in segments."""

from __future__ import annotations

import argparse

import pytest
import torch

from localdisc.runtime.checkpoint import load_weights
from localdisc.tasks.shape_runs import run_name, train_shape


def _args(**kw) -> argparse.Namespace:
    base = dict(pretrain_steps=5, batch_size=2, image_size=[32, 32], encoder_channels=[4, 8, 8], decoder_channels=[8, 4], grid=2, priors=4, disc_width=4, disc_layers=2,
                prior_kind="retina", prior_size=[32, 32], prior_roots=4, adv_weight=1.0, disc_input="argmax", disc_lr_scale=5.0, shift=0.5, crop_size=[16, 16],
                crop_scale=[0.2, 0.3], stage1_steps=2, checkpoint_every=200, lr_halve_every=0, num_clusters=8, device="cpu")
    return argparse.Namespace(**{**base, **kw})


def test_a_run_grown_in_segments_is_the_run_trained_in_one_go(tmp_path):
    args, data = _args(), "synthetic-fundus:4:32x32"
    single = train_shape(data, tmp_path / "single", args)
    train_shape(data, tmp_path / "grown", args, 3)  # stage 1 (2 steps) + 1 stage-2 step
    mid = load_weights(tmp_path / "grown" / "model.safetensors")
    grown = train_shape(data, tmp_path / "grown", args)
    a, b = load_weights(single / "model.safetensors"), load_weights(grown / "model.safetensors")
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert any(not torch.equal(mid[k], b[k]) for k in mid)  # the second segment did train
    assert train_shape(data, tmp_path / "grown", args, 4) == grown  # a shorter curve point never retrains a longer run


def test_run_names_tell_patch_training_apart():
    assert run_name(_args(crop_size=None, shift=0.0)) == "ld_shape_retina_32x32"
    assert run_name(_args()) == "ld_shape_retina_32x32_shift0.5_crop16x16_s0.2-0.3"


def test_a_run_trained_with_other_settings_is_refused_not_continued(tmp_path):
    args, data = _args(pretrain_steps=3), "synthetic-fundus:4:32x32"
    train_shape(data, tmp_path / "run", args)
    with pytest.raises(SystemExit, match="disc_width: 4 != 8"):
        train_shape(data, tmp_path / "run", _args(pretrain_steps=5, disc_width=8))
    assert train_shape(data, tmp_path / "run", _args(pretrain_steps=4)) == tmp_path / "run"  # same settings, longer: continues
