"""``localdisc finetune --pdcr --uafs-stages ...`` runs end to end in 2D and 3D (tiny data)."""

from __future__ import annotations

import csv

import pytest
import torch

from localdisc.cli.main import main
from localdisc.runtime.checkpoint import load_weights


@pytest.fixture(autouse=True)
def _cache(tmp_path_factory, monkeypatch):
    monkeypatch.setenv("LOCALDISC_CACHE", str(tmp_path_factory.getbasetemp() / "cache"))


TINY = ["--encoder-channels", "4", "8", "8", "8", "--decoder-channels", "8", "8", "8", "--steps", "2", "--batch-size", "2",
        "--eval-every", "2", "--checkpoint-every", "2", "--log-every", "1", "--device", "cpu"]


@pytest.mark.parametrize("data,size,patch", [
    ("synthetic-fundus:6:32x32", ["32", "32"], []),
    ("synthetic-3d:4:16x16x16", ["16", "16", "16"], ["--patch-size", "8", "16", "16"]),
])
def test_finetune_with_pdcr_and_uafs(tmp_path, data, size, patch):
    out = tmp_path / "run"
    argv = ["finetune", "--data", data, "--image-size", *size, *patch, "--out", str(out), *TINY,
            "--pdcr", "--pdcr-layers", "decoder.1", "decoder.2", "--pdcr-vectors", "16", "--pdcr-windows", "0", "5",
            "--pdcr-cross-layer", "--uafs-stages", "1", "2"]
    assert main(argv) == 0
    with open(out / "metrics.csv") as fh:
        rows = list(csv.DictReader(fh))
    values = [float(r["pdcr_loss"]) for r in rows if r.get("pdcr_loss")]
    assert values and all(v == v and abs(v) < 1e3 for v in values)  # logged and finite
    weights = load_weights(out / "model.safetensors")
    assert any(k.startswith("decoder_gates.1.head.") for k in weights) and any(k.startswith("decoder_gates.2.head.") for k in weights)
    assert all(torch.isfinite(v).all() for v in weights.values() if v.is_floating_point())


def test_bad_pdcr_layer_is_a_clean_cli_error(tmp_path, capsys):
    argv = ["finetune", "--data", "synthetic-fundus:6:32x32", "--image-size", "32", "32", "--out", str(tmp_path / "run"), *TINY,
            "--pdcr", "--pdcr-layers", "decoder.9"]
    assert main(argv) == 2
    assert "decoder.9" in capsys.readouterr().err
