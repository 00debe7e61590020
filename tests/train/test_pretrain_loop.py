"""The generic pretraining loop with a tiny method: resume == uninterrupted, metrics.csv,
atomic checkpoints, --seed repeatability, workers and bf16 autocast."""

from __future__ import annotations

import csv
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from localdisc.cli.main import main
from localdisc.methods import METHODS
from localdisc.methods.base import PretrainMethod
from localdisc.runtime.checkpoint import latest_checkpoint, load_checkpoint, load_weights


@dataclass
class TinyReconConfig:
    noise: float = 0.2


class TinyRecon(PretrainMethod):
    """Denoising with torch-RNG noise, so resuming must restore the RNG to match."""

    name = "tiny-recon"
    Config = TinyReconConfig
    calls = 0
    crash_at = -1

    def __init__(self, backbone, cfg):
        super().__init__(backbone, cfg)
        self.head = torch.nn.Conv2d(backbone.config.trunk_channels, backbone.config.in_channels, 1)

    def training_step(self, images):
        TinyRecon.calls += 1
        if TinyRecon.calls == TinyRecon.crash_at:
            raise KeyboardInterrupt("simulated kill")
        noisy = images + self.cfg.noise * torch.randn_like(images)
        out = self.head(self.backbone(noisy)).float()
        loss = F.mse_loss(out, images.float())
        return loss, {"noise_std": float(noisy.sub(images).std())}


@pytest.fixture
def tiny(monkeypatch, tmp_path):
    from PIL import Image

    monkeypatch.setitem(METHODS, "tiny-recon", f"{__name__}:TinyRecon")
    TinyRecon.calls, TinyRecon.crash_at = 0, -1
    data = tmp_path / "data"
    data.mkdir()
    rng = np.random.default_rng(0)
    for i in range(6):
        Image.fromarray((rng.random((18, 18)) * 255).astype(np.uint8)).save(data / f"im{i}.png")
    return data


def _args(data: Path, out: Path, steps: int = 6, *extra: str) -> list[str]:
    return ["pretrain", "--method", "tiny-recon", "--data", str(data), "--out", str(out), "--steps", str(steps), "--batch-size", "2",
            "--image-size", "16", "16", "--encoder-channels", "4", "8", "--decoder-channels", "4", "--norm", "group", "--split", "all",
            "--log-every", "1", "--checkpoint-every", "2", "--picture-every", "0", *extra]


def _rows(run: Path) -> list[dict]:
    with (run / "metrics.csv").open() as f:
        return list(csv.DictReader(f))


def _same_weights(a: Path, b: Path) -> bool:
    wa, wb = load_weights(a / "model.safetensors"), load_weights(b / "model.safetensors")
    return set(wa) == set(wb) and all(torch.equal(wa[k], wb[k]) for k in wa)


def test_resume_after_kill_reproduces_uninterrupted_run(tiny, tmp_path):
    assert main(_args(tiny, tmp_path / "full")) == 0
    TinyRecon.calls, TinyRecon.crash_at = 0, 6  # killed during step 6; checkpoint at step 4 exists
    assert main(_args(tiny, tmp_path / "part")) == 130
    assert json.loads((tmp_path / "part" / "latest.json").read_text())["step"] == 4
    assert main(_args(tiny, tmp_path / "part", 6, "--resume")) == 0
    assert _same_weights(tmp_path / "full", tmp_path / "part")
    full, part = _rows(tmp_path / "full"), _rows(tmp_path / "part")
    assert [r["step"] for r in part] == [str(s) for s in range(1, 7)]  # no duplicated or missing steps
    assert [r["loss"] for r in part] == [r["loss"] for r in full]
    assert {"step", "loss", "lr", "images_per_s", "step_images_per_s", "noise_std"} <= set(full[0])
    # the steps alone exclude data loading, logging and checkpoints: never slower than end to end
    assert all(float(r["step_images_per_s"]) >= float(r["images_per_s"]) for r in full)
    assert (tmp_path / "full" / "backbone.safetensors").is_file() and (tmp_path / "full" / "backbone.json").is_file()


def test_seed_repeatability(tiny, tmp_path):
    for name, seed in [("a", "3"), ("b", "3"), ("c", "4")]:
        assert main(_args(tiny, tmp_path / name, 2, "--seed", seed)) == 0
    assert _same_weights(tmp_path / "a", tmp_path / "b")
    assert not _same_weights(tmp_path / "a", tmp_path / "c")


def test_checkpoint_write_crash_keeps_previous_checkpoint(tiny, tmp_path, monkeypatch, capsys):
    import localdisc.runtime.checkpoint as ckpt

    real_save, n = torch.save, {"calls": 0}

    def flaky_save(obj, path, *a, **k):
        n["calls"] += 1
        if n["calls"] == 2:  # second checkpoint dies half-written
            Path(path).write_bytes(b"partial")
            raise OSError("disk full")
        return real_save(obj, path, *a, **k)

    monkeypatch.setattr(ckpt.torch, "save", flaky_save)
    assert main(_args(tiny, tmp_path / "run")) == 2  # one line, not a raw OSError traceback
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "disk full" in err[0] and "ckpt-00000002 is intact" in err[0] and "--resume" in err[0]
    assert not list((tmp_path / "run").glob(".*.tmp"))  # the torn temporary is gone
    monkeypatch.setattr(ckpt.torch, "save", real_save)
    latest = latest_checkpoint(tmp_path / "run")
    assert latest is not None and latest.name == "ckpt-00000002"
    assert sorted(p.name for p in (tmp_path / "run").glob("ckpt-*")) == ["ckpt-00000002"]  # the torn one is not visible
    weights, state, meta = load_checkpoint(latest)
    assert meta["step"] == 2 and "optimizer" in state and weights
    assert main(_args(tiny, tmp_path / "run", 6, "--resume")) == 0
    assert main(_args(tiny, tmp_path / "ref")) == 0
    assert _same_weights(tmp_path / "run", tmp_path / "ref")


def test_workers_and_existing_run(tiny, tmp_path, capsys):
    assert main(_args(tiny, tmp_path / "w0", 2)) == 0
    assert main(_args(tiny, tmp_path / "w1", 2, "--workers", "1")) == 0
    assert _same_weights(tmp_path / "w0", tmp_path / "w1")  # batches do not depend on loader workers
    assert main(_args(tiny, tmp_path / "w0", 2)) == 2
    assert "--resume" in capsys.readouterr().err


def test_bf16_autocast_runs_on_cpu(tiny, tmp_path):
    assert main(_args(tiny, tmp_path / "bf16", 2, "--precision", "bf16")) == 0
    losses = [float(r["loss"]) for r in _rows(tmp_path / "bf16")]
    assert len(losses) == 2 and all(np.isfinite(losses))
    assert main(_args(tiny, tmp_path / "bad", 2, "--precision", "fp8")) == 2


def test_nan_loss_stops_with_clear_error_and_keeps_last_checkpoint(tiny, tmp_path, monkeypatch, capsys):
    original = TinyRecon.training_step

    def nan_at_step_5(self, images):
        loss, logs = original(self, images)
        return (loss * float("nan"), logs) if TinyRecon.calls == 5 else (loss, logs)

    monkeypatch.setattr(TinyRecon, "training_step", nan_at_step_5)
    out = tmp_path / "nan"
    assert main(_args(tiny, out)) == 2
    err = capsys.readouterr().err
    assert "loss became nan at step 5" in err and str(out) in err
    ckpt = latest_checkpoint(out)
    assert json.loads((out / "latest.json").read_text())["step"] == 4
    weights, _, _ = load_checkpoint(ckpt)
    assert all(torch.isfinite(w).all() for w in weights.values())
