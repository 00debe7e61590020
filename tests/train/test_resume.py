import csv
import dataclasses

import pytest
import torch

from localdisc.runtime.checkpoint import load_weights
from localdisc.train.finetune import FinetuneConfig, finetune


@pytest.fixture(autouse=True)
def _cache(tmp_path_factory, monkeypatch):
    monkeypatch.setenv("LOCALDISC_CACHE", str(tmp_path_factory.getbasetemp() / "cache"))


def _cfg(out) -> FinetuneConfig:
    # augmentation + foreground patches + cosine schedule + validation: everything that draws randomness
    return FinetuneConfig(data="synthetic-fundus:10:32x32", out=str(out), steps=6, batch_size=2, image_size=(32, 32), patch_size=(16, 16),
                          labels=4, eval_every=3, checkpoint_every=2, log_every=1, encoder_channels=(4, 8, 8), decoder_channels=(8, 8))


@pytest.mark.parametrize("stop_after", [3, 4])
def test_resume_reproduces_uninterrupted_run(tmp_path, monkeypatch, stop_after):
    full = finetune(_cfg(tmp_path / "full"))

    cfg = _cfg(tmp_path / "killed")
    monkeypatch.setenv("LOCALDISC_STOP_AFTER_STEP", str(stop_after))
    with pytest.raises(KeyboardInterrupt):
        finetune(cfg)
    assert not (tmp_path / "killed" / "model.safetensors").exists()
    monkeypatch.delenv("LOCALDISC_STOP_AFTER_STEP")
    resumed = finetune(dataclasses.replace(cfg, resume=True))

    for name in ("model.safetensors", "best.safetensors"):
        a, b = load_weights(full / name), load_weights(resumed / name)
        assert a.keys() == b.keys()
        for k in a:
            torch.testing.assert_close(a[k], b[k], rtol=0, atol=1e-6, msg=f"{name}:{k}")
    rows = list(csv.DictReader((resumed / "metrics.csv").open()))
    assert [int(r["step"]) for r in rows] == [1, 2, 3, 4, 5, 6]  # no duplicated or missing steps
    ref = list(csv.DictReader((full / "metrics.csv").open()))
    assert [r["loss"] for r in rows] == [r["loss"] for r in ref]
