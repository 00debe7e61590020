"""The default training resolution comes from the data: median size, never upsampled, capped,
a multiple of the network's stride; volumes in RAS order, optionally resampled to --spacing."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from localdisc.data import resolution
from localdisc.data.resolution import auto_image_size, image_shape
from localdisc.errors import DataError


def _pngs(folder, sizes):
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for i, (h, w) in enumerate(sizes):
        p = folder / f"im{i}.png"
        Image.fromarray(np.zeros((h, w), np.uint8)).save(p)
        paths.append(str(p))
    return paths


def test_median_size_rounded_down_to_the_stride_never_upsampled(tmp_path):
    paths = _pngs(tmp_path, [(584, 565), (590, 560), (600, 570), (64, 64), (584, 565)])
    assert auto_image_size(paths, multiple=16) == (576, 560)  # median 584x565, rounded down
    small = _pngs(tmp_path / "small", [(64, 64), (60, 70)])
    assert auto_image_size(small, multiple=16) == (48, 64)  # median 62x67: not upsampled to 256
    assert auto_image_size(small, multiple=4) == (60, 64)


def test_large_images_are_capped_keeping_the_aspect(tmp_path, monkeypatch):
    monkeypatch.setattr(resolution, "MAX_SIDE", 512)
    paths = _pngs(tmp_path, [(2000, 1000)] * 3)
    assert auto_image_size(paths, multiple=16) == (512, 256)


def test_volumes_in_ras_order_and_resampled_to_a_spacing(tmp_path):
    nib = pytest.importorskip("nibabel")
    lps = np.diag([-0.8, -0.8, 2.0, 1.0])  # x, y flipped: still (x, y, z) = (40, 30, 20) voxels
    for i in range(3):
        nib.save(nib.Nifti1Image(np.zeros((40, 30, 20), np.float32), lps), str(tmp_path / f"v{i}.nii.gz"))
    paths = [str(tmp_path / f"v{i}.nii.gz") for i in range(3)]
    shape, spacing = image_shape(paths[0])
    assert shape == (20, 30, 40) and spacing == pytest.approx((2.0, 0.8, 0.8))  # (D, H, W) = (z, y, x)
    assert auto_image_size(paths, multiple=4) == (20, 28, 40)
    # resampled to 1 mm: field of view 40 x 24 x 32 mm
    assert auto_image_size(paths, spacing=(1.0, 1.0, 1.0), multiple=8) == (40, 24, 32)
    with pytest.raises(DataError, match="--spacing needs 3 numbers"):
        auto_image_size(paths, spacing=(1.0, 1.0))


def test_mixed_2d_and_3d_is_an_error(tmp_path):
    nib = pytest.importorskip("nibabel")
    paths = _pngs(tmp_path, [(32, 32)])
    nib.save(nib.Nifti1Image(np.zeros((8, 8, 8), np.float32), np.eye(4)), str(tmp_path / "v.nii.gz"))
    with pytest.raises(DataError, match="mixes 2D images and 3D volumes"):
        auto_image_size(paths + [str(tmp_path / "v.nii.gz")])


def test_finetune_and_pretrain_default_to_the_data_size(tmp_path):
    import yaml

    from localdisc.cli.main import main

    tiny = ["--encoder-channels", "4", "8", "8", "--decoder-channels", "8", "8", "--batch-size", "2", "--picture-every", "0"]
    assert main(["finetune", "--data", "synthetic-fundus:6:50x42", "--out", str(tmp_path / "ft"), "--steps", "1", *tiny[:7], "--batch-size", "2"]) == 0
    saved = yaml.safe_load((tmp_path / "ft" / "config.yaml").read_text())
    assert saved["image_size"] == [] and saved["effective"]["image_size"] == [48, 40]  # stride 4: 50x42 -> 48x40
    assert main(["pretrain", "--data", "synthetic-fundus:6:50x42", "--out", str(tmp_path / "pt"), "--steps", "2", *tiny]) == 0
    assert yaml.safe_load((tmp_path / "pt" / "config.yaml").read_text())["effective"]["image_size"] == [48, 40]
