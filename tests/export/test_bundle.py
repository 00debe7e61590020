"""MONAI bundle export: `python -m monai.bundle run` on a folder of PNGs gives localdisc's predictions."""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from localdisc.export import export_run

sys.path.insert(0, str(Path(__file__).parent))
from test_export import make_finetune_run  # noqa: E402


def _pngs(folder: Path) -> list[Path]:
    folder.mkdir()
    rng = np.random.default_rng(0)
    rgb = folder / "a.png"
    Image.fromarray((rng.random((20, 26, 3)) * 255).astype(np.uint8)).save(rgb)  # other size than training
    gray = folder / "b.png"
    Image.fromarray((rng.random((16, 16)) * 255).astype(np.uint8)).save(gray)  # gray -> repeated to RGB
    return [rgb, gray]


def _reference(unet, info, path: Path) -> np.ndarray:
    from localdisc.data.io import read_image
    from localdisc.tasks.evaluate import predict_probs

    return predict_probs(unet, read_image(path, info["in_channels"]), info, "cpu").argmax(0).numpy()


def _run_bundle(bundle: Path, images: Path, out: Path) -> None:
    cfg = ["--config_file", str(bundle / "configs" / "inference.json"), "--meta_file", str(bundle / "configs" / "metadata.json"),
           "--bundle_root", str(bundle), "--dataset_dir", str(images), "--output_dir", str(out)]
    if importlib.util.find_spec("fire") is not None:  # the documented CLI
        cmd = [sys.executable, "-m", "monai.bundle", "run", *cfg]
    else:  # same entry point without the CLI wrapper's `fire` dependency
        kw = {cfg[i].lstrip("-"): cfg[i + 1] for i in range(0, len(cfg), 2)}
        cmd = [sys.executable, "-c", f"import monai.bundle; monai.bundle.run(**{kw!r})"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=180, env=env)
    assert res.returncode == 0, res.stdout[-2000:] + res.stderr[-3000:]


@pytest.mark.parametrize("patch", [(), (8, 8)], ids=["whole", "sliding-window"])  # the only check that the bundle slides windows like localdisc
def test_bundle_reproduces_localdisc_predictions(tmp_path, patch):
    unet, info = make_finetune_run(tmp_path / "ft", channels=3, num_classes=3, size=(16, 16), patch=patch)
    bundle = export_run(tmp_path / "ft", "monai-bundle", tmp_path / "bundle")
    assert (bundle / "models" / "model.pt2").is_file()
    meta = json.loads((bundle / "configs" / "metadata.json").read_text())
    assert meta["network_data_format"]["outputs"]["pred"]["num_channels"] == 3
    images = _pngs(tmp_path / "images")
    _run_bundle(bundle, tmp_path / "images", tmp_path / "out")
    for path in images:
        got = np.asarray(Image.open(tmp_path / "out" / f"{path.stem}_seg.png"))
        want = _reference(unet, info, path)
        assert got.shape == want.shape == Image.open(path).size[::-1]
        assert len(np.unique(want)) > 1, "degenerate test: the reference predicts one class"
        np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize("lps", [False, True], ids=["ras", "lps"])
def test_3d_bundle_reproduces_localdisc_predictions(tmp_path, lps):
    """A 3D model's bundle on NIfTI volumes (oblique, anisotropic, one stored LPS): the bundle's
    segmentation, brought back to the source's voxel order, equals localdisc's own prediction."""
    from dataclasses import asdict

    import nibabel as nib

    from localdisc.data.geometry import geometry_of, to_source
    from localdisc.data.io import read_image, read_volume
    from localdisc.nets import UNet, UNetConfig
    from localdisc.runtime.checkpoint import save_weights
    from localdisc.tasks.evaluate import predict_probs

    torch.manual_seed(0)
    cfg = UNetConfig(spatial_dims=3, in_channels=1, encoder_channels=(4, 8), decoder_channels=(4,), norm="instance")
    unet = UNet(cfg, out_channels=2).eval()
    with torch.no_grad():
        unet.seg_head.bias.copy_(torch.tensor([0.0, 0.0]))
    run = tmp_path / "ft3"
    run.mkdir()
    save_weights(unet.state_dict(), run / "best.safetensors")
    info = {"unet": asdict(cfg), "num_classes": 2, "class_names": ["background", "tumour"], "image_size": [8, 12, 12], "in_channels": 1}
    (run / "model.json").write_text(json.dumps(info))
    bundle = export_run(run, "monai-bundle", tmp_path / "bundle")
    assert json.loads((bundle / "configs" / "metadata.json").read_text())["task"] == "2-class 3D segmentation"
    images = tmp_path / "images"
    images.mkdir()
    rng = np.random.default_rng(1)
    aff = np.array([[0.0, -0.9, 0.2, 10.0], [0.7, 0.0, 0.0, -5.0], [0.0, 0.1, 2.5, 30.0], [0, 0, 0, 1]])
    if lps:
        aff = np.diag([-1.0, -1.0, 1.0, 1.0]) @ aff
    vol = rng.normal(100, 30, (14, 18, 9)).astype(np.float32)
    nib.save(nib.Nifti1Image(vol, aff), str(images / "scan.nii.gz"))
    _run_bundle(bundle, images, tmp_path / "out")
    got = nib.load(str(tmp_path / "out" / "scan_seg.nii.gz"))
    want = predict_probs(unet, read_image(images / "scan.nii.gz"), info, "cpu").argmax(0).numpy()  # localdisc's (D, H, W), RAS
    assert len(np.unique(want)) > 1, "degenerate test: the reference predicts one class"
    _, geom = read_volume(images / "scan.nii.gz")
    # the bundle writes the RAS-reoriented array with its own affine: same world placement
    np.testing.assert_allclose(got.affine, geom.canonical_affine(), atol=1e-4)
    ras_geom = geometry_of(got.affine, got.shape)
    np.testing.assert_array_equal(to_source(want, ras_geom), np.asarray(got.dataobj))
