"""``localdisc pretrain --method ld`` end to end on tiny folders (2D PNG, 3D .npy, real fundus)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from localdisc.cli.main import main

SMALL = ["--encoder-channels", "4", "8", "8", "--decoder-channels", "8", "8", "--grid", "4", "--picture-every", "0", "--log-every", "1"]


def _run(data: Path, out: Path, size: list[str], *extra: str) -> int:
    return main(["pretrain", "--method", "ld", "--data", str(data), "--out", str(out), "--steps", "3", "--image-size", *size, "--stage", "both", "--stage1-steps", "2", "--batch-size", "2", *SMALL, *extra])


def test_pretrain_ld_2d_png(tmp_path):
    data = tmp_path / "pngs"
    data.mkdir()
    rng = np.random.default_rng(0)
    for i in range(4):
        Image.fromarray((rng.random((40, 48, 3)) * 255).astype(np.uint8)).save(data / f"x{i}.png")
    out = tmp_path / "run"
    assert _run(data, out, ["64", "64"]) == 0
    for f in ("stage1/model.safetensors", "model.safetensors", "backbone.safetensors", "backbone.json", "pictures/embeddings.png", "metrics.csv"):
        assert (out / f).is_file(), f
    assert "stage: '2'" in (out / "config.yaml").read_text()
    assert _run(data, out, ["64", "64"]) == 2  # refuses to overwrite silently


def test_pretrain_ld_3d_npy(tmp_path):
    data = tmp_path / "vols"
    data.mkdir()
    rng = np.random.default_rng(1)
    for i in range(2):
        np.save(data / f"v{i}.npy", rng.random((12, 12, 12)).astype(np.float32))
    out = tmp_path / "run3d"
    assert _run(data, out, ["8", "8", "8"]) == 0
    assert (out / "backbone.safetensors").is_file() and (out / "pictures" / "embeddings.png").is_file()


def test_pretrain_ld_real_fundus(tmp_path):
    skdata = pytest.importorskip("skimage.data")
    data = tmp_path / "retina"
    data.mkdir()
    Image.fromarray(skdata.retina()).resize((96, 96)).save(data / "retina.png")
    out = tmp_path / "run_retina"
    assert _run(data, out, ["32", "32"], "--stage1-steps", "1") == 0
    assert "loss_ld" in (out / "metrics.csv").read_text()
