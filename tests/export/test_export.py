"""Export: torch.export/ONNX reproduce PyTorch, safetensors/encoder round-trip, CLI errors."""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path

import pytest
import torch

from localdisc.cli.main import main
from localdisc.nets import UNet, UNetConfig
from localdisc.runtime.checkpoint import load_weights, save_weights


def make_finetune_run(folder: Path, channels: int = 3, num_classes: int = 3, size=(16, 16), patch=()) -> tuple[UNet, dict]:
    """A run folder in the layout `localdisc finetune` writes (model.json + best/model.safetensors)."""
    torch.manual_seed(0)
    cfg = UNetConfig(in_channels=channels, encoder_channels=(4, 8, 8), decoder_channels=(8, 4), norm="batch", uafs_stages=(1,))
    unet = UNet(cfg, out_channels=num_classes)
    for m in unet.modules():  # non-trivial BN statistics so eval-mode export is really checked
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-0.2, 0.2)
            m.running_var.uniform_(0.5, 1.5)
    unet.eval()
    with torch.no_grad():  # center the logits so that predictions are not one class everywhere
        unet.seg_head.weight.mul_(30)
        unet.seg_head.bias.sub_(unet(torch.rand(2, channels, *size)).mean(dim=tuple(range(2, 2 + len(size))))[0])
    folder.mkdir(parents=True)
    info = {"unet": asdict(cfg), "num_classes": num_classes, "class_names": [f"c{i}" for i in range(num_classes)], "image_size": list(size),
            "patch_size": list(patch), "in_channels": channels, "task": "segmentation"}
    save_weights(unet.state_dict(), folder / "best.safetensors")
    save_weights({k: v + 1 for k, v in unet.state_dict().items()}, folder / "model.safetensors")  # "last" differs from "best"
    (folder / "model.json").write_text(json.dumps(info))
    (folder / "config.yaml").write_text("method: finetune\n")
    return unet, info


@pytest.fixture
def run(tmp_path):
    return make_finetune_run(tmp_path / "ft")


def test_torch_export_matches_pytorch_without_deprecation_warnings(run, tmp_path):
    import warnings

    unet, info = run
    with warnings.catch_warnings():
        warnings.simplefilter("error", DeprecationWarning)  # TorchScript / the TorchScript ONNX exporter would warn
        warnings.simplefilter("error", FutureWarning)
        assert main(["export", str(tmp_path / "ft"), "--format", "torch-export", "--out", str(tmp_path / "m")]) == 0
    program = torch.export.load(str(tmp_path / "m.pt2")).module()
    for shape in [(2, 3, 16, 16), (1, 3, 24, 32), (5, 3, 32, 16)]:  # batch and spatial sizes stay symbolic
        x = torch.rand(*shape)
        with torch.no_grad():
            torch.testing.assert_close(program(x), unet(x), atol=1e-4, rtol=0)
    extra = {"localdisc.json": ""}
    torch.export.load(str(tmp_path / "m.pt2"), extra_files=extra)
    assert json.loads(extra["localdisc.json"])["num_classes"] == info["num_classes"]


def test_onnx_matches_pytorch(run, tmp_path):
    pytest.importorskip("onnx", reason="the 'export' extra is not installed: pip install -e '.[export]'")
    pytest.importorskip("onnxruntime", reason="the 'export' extra is not installed: pip install -e '.[export]'")
    pytest.importorskip("onnxscript", reason="the 'export' extra is not installed: pip install -e '.[export]'")
    from localdisc.export.onnx import run_onnx

    unet, _ = run
    assert main(["export", str(tmp_path / "ft"), "--format", "onnx", "--out", str(tmp_path / "m.onnx")]) == 0
    for shape in [(2, 3, 16, 16), (1, 3, 24, 32)]:
        x = torch.rand(*shape)
        with torch.no_grad():
            torch.testing.assert_close(torch.from_numpy(run_onnx(tmp_path / "m.onnx", x)), unet(x), atol=1e-4, rtol=0)


def test_safetensors_export_uses_best_weights(run, tmp_path):
    unet, info = run
    assert main(["export", str(tmp_path / "ft"), "--format", "safetensors", "--out", str(tmp_path / "w.safetensors")]) == 0
    w = load_weights(tmp_path / "w.safetensors")
    assert set(w) == set(unet.state_dict())
    assert all(torch.equal(w[k], v) for k, v in unet.state_dict().items())
    assert json.loads((tmp_path / "w.json").read_text())["num_classes"] == info["num_classes"]
    assert main(["export", str(tmp_path / "ft"), "--format", "safetensors", "--checkpoint", "last", "--out", str(tmp_path / "l")]) == 0
    last = load_weights(tmp_path / "l.safetensors")
    k = "seg_head.weight"
    assert torch.equal(last[k], unet.state_dict()[k] + 1)


def test_encoder_export_from_pretraining_run_transfers_by_name(tmp_path):
    from localdisc.nets.transfer import save_backbone, transfer_weights

    torch.manual_seed(1)
    backbone = UNet(UNetConfig(in_channels=1, encoder_channels=(4, 8), decoder_channels=(4,), norm="group"))
    (tmp_path / "pre").mkdir()
    save_backbone(backbone, tmp_path / "pre", "ld")
    assert main(["export", str(tmp_path / "pre"), "--format", "encoder", "--out", str(tmp_path / "enc")]) == 0
    enc = load_weights(tmp_path / "enc.safetensors")
    meta = json.loads((tmp_path / "enc.json").read_text())
    assert enc and all(k.startswith("encoder.") for k in enc)
    assert sorted(enc) == sorted(backbone.encoder_parameter_names())
    target = UNet(UNetConfig(**meta["unet"]), out_channels=2)
    names = transfer_weights(target, enc)
    assert names == sorted(enc) and torch.equal(target.state_dict()["encoder.0.0.weight"], backbone.state_dict()["encoder.0.0.weight"])


def test_encoder_export_from_finetune_run(run, tmp_path):
    unet, _ = run
    assert main(["export", str(tmp_path / "ft"), "--format", "encoder", "--out", str(tmp_path / "e.safetensors")]) == 0
    enc = load_weights(tmp_path / "e.safetensors")
    assert set(enc) == {k for k in unet.state_dict() if k.startswith("encoder.")}


def test_bad_inputs_give_one_line_errors(tmp_path, capsys):
    from localdisc.nets.transfer import save_backbone

    assert main(["export", str(tmp_path / "missing"), "--format", "onnx", "--out", str(tmp_path / "x")]) == 2
    assert "no such run folder" in capsys.readouterr().err
    (tmp_path / "pre").mkdir()
    save_backbone(UNet(UNetConfig(encoder_channels=(4, 8), decoder_channels=(4,))), tmp_path / "pre", "simclr")
    assert main(["export", str(tmp_path / "pre"), "--format", "torch-export", "--out", str(tmp_path / "x")]) == 2
    assert "only --format encoder applies" in capsys.readouterr().err
    assert main(["export", str(tmp_path / "pre"), "--format", "tflite", "--out", str(tmp_path / "x")]) == 2
    assert "invalid choice: 'tflite'" in capsys.readouterr().err


def test_3d_model_exports_to_torch_export(tmp_path):
    from localdisc.export import export_run

    torch.manual_seed(0)
    cfg = UNetConfig(spatial_dims=3, in_channels=1, encoder_channels=(2, 4), decoder_channels=(2,), norm="instance")
    unet = UNet(cfg, out_channels=2).eval()
    run = tmp_path / "ft3"
    run.mkdir()
    save_weights(unet.state_dict(), run / "best.safetensors")
    (run / "model.json").write_text(json.dumps({"unet": asdict(cfg), "num_classes": 2, "image_size": [8, 8, 8], "in_channels": 1}))
    path = export_run(run, "torch-export", tmp_path / "m3")
    assert path.suffix == ".pt2"
    x = torch.rand(1, 1, 8, 8, 8)
    with torch.no_grad():
        torch.testing.assert_close(torch.export.load(str(path)).module()(x), unet(x), atol=1e-4, rtol=0)
