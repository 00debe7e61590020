"""Readers: round trips (PNG, gz PPM, NIfTI, DICOM) and every bad input naming its file."""

from __future__ import annotations

import gzip

import numpy as np
import pytest
from dicom_files import write_dicom
from PIL import Image

from localdisc.data.datasets import ImageDataset, num_channels_of
from localdisc.data.io import read_image, read_mask, read_spacing
from localdisc.data.records import Sample
from localdisc.errors import DataError


def save(path, arr):
    Image.fromarray(arr).save(path)
    return path


def test_png_round_trip_gray_rgb_and_channel_conversion(tmp_path, rng):
    gray = rng.integers(0, 256, (5, 7), dtype=np.uint8)
    rgb = rng.integers(0, 256, (5, 7, 3), dtype=np.uint8)
    g = read_image(save(tmp_path / "g.png", gray))
    c = read_image(save(tmp_path / "c.png", rgb))
    assert g.shape == (1, 5, 7) and g.dtype == np.float32
    np.testing.assert_allclose(g[0], gray / 255.0, atol=1e-6)
    np.testing.assert_allclose(c, np.moveaxis(rgb, -1, 0) / 255.0, atol=1e-6)
    lum = read_image(tmp_path / "c.png", channels=1)
    np.testing.assert_allclose(lum[0], (rgb @ np.array([0.299, 0.587, 0.114])) / 255.0, atol=1e-5)
    assert read_image(tmp_path / "g.png", channels=3).shape == (3, 5, 7)


def test_rgba_drops_alpha_and_16bit_scales(tmp_path, rng):
    rgba = rng.integers(0, 256, (4, 4, 4), dtype=np.uint8)
    assert read_image(save(tmp_path / "a.png", rgba)).shape == (3, 4, 4)
    deep = np.array([[0, 65535], [1000, 30000]], dtype=np.uint16)
    out = read_image(save(tmp_path / "d.png", deep))
    lo, hi = np.percentile(deep.astype(np.float32), [0.5, 99.5])  # 16-bit: the image's own 0.5/99.5 percentiles
    np.testing.assert_allclose(out[0], np.clip((deep - lo) / (hi - lo), 0, 1), atol=1e-6)


def test_wrong_channel_count_names_file(tmp_path, rng):
    p = save(tmp_path / "c.png", rng.integers(0, 256, (4, 4, 3), dtype=np.uint8))
    with pytest.raises(DataError, match=r"c\.png.*3 channel.*2 are expected"):
        read_image(p, channels=2)
    ds = ImageDataset([Sample(id="c", image=str(p))], size=None, channels=4)
    with pytest.raises(DataError, match="c.png"):
        ds[0]


def test_truncated_garbage_and_missing_images_raise(tmp_path, rng):
    good = save(tmp_path / "ok.png", rng.integers(0, 256, (32, 32, 3), dtype=np.uint8))
    trunc = tmp_path / "trunc.png"
    trunc.write_bytes(good.read_bytes()[:60])
    junk = tmp_path / "junk.jpg"
    junk.write_bytes(b"this is not a jpeg")
    for p, msg in ((trunc, "trunc.png: unreadable or truncated"), (junk, "junk.jpg: unreadable"), (tmp_path / "nope.png", "nope.png: file not found")):
        with pytest.raises(DataError, match=msg):
            read_image(p)
    with pytest.raises(DataError, match="trunc.png"):
        read_mask(trunc)


def test_mask_values(tmp_path):
    base = np.zeros((4, 4), np.uint8)
    base[1:3, 1:3] = 255
    np.testing.assert_array_equal(read_mask(save(tmp_path / "m.png", base)), (base > 0).astype(np.int64))
    idx = base.copy()
    idx[0, 0] = 2
    idx[1:3, 1:3] = 1
    assert set(np.unique(read_mask(save(tmp_path / "i.png", idx)))) == {0, 1, 2}
    with pytest.raises(DataError, match=r"i\.png.*class 2.*2 classes"):
        read_mask(tmp_path / "i.png", num_classes=2)
    lossy = base.copy()
    lossy[0, 0] = 128  # JPEG-like halo around a 0/255 mask
    with pytest.raises(DataError, match=r"lossy\.png.*unexpected values \[128\]"):
        read_mask(save(tmp_path / "lossy.png", lossy))
    np.save(tmp_path / "f.npy", np.full((2, 2, 2), 0.5))
    with pytest.raises(DataError, match="f.npy.*non-integer"):
        read_mask(tmp_path / "f.npy")


def test_mask_size_mismatch_through_dataset(tmp_path, rng):
    img = save(tmp_path / "x.png", rng.integers(0, 256, (8, 8), dtype=np.uint8))
    msk = save(tmp_path / "x_mask.png", np.zeros((8, 6), np.uint8))
    ds = ImageDataset([Sample(id="x", image=str(img), mask=str(msk))], size=(4, 4), channels=1, with_masks=True)
    with pytest.raises(DataError, match=r"x_mask\.png: mask size \(8, 6\) differs from image size \(8, 8\)"):
        ds[0]
    unlabeled = ImageDataset([Sample(id="x", image=str(img))], size=None, channels=1, with_masks=True)
    with pytest.raises(DataError, match="x.png: no mask"):
        unlabeled[0]
    assert num_channels_of([Sample(id="x", image=str(img))]) == 1


def test_gzipped_ppm(tmp_path, rng):
    rgb = rng.integers(0, 256, (6, 5, 3), dtype=np.uint8)
    save(tmp_path / "im.ppm", rgb)
    gz = tmp_path / "im0001.ppm.gz"
    gz.write_bytes(gzip.compress((tmp_path / "im.ppm").read_bytes()))
    np.testing.assert_allclose(read_image(gz), read_image(tmp_path / "im.ppm"))
    bad = tmp_path / "bad.ppm.gz"
    bad.write_bytes(b"not gzip")
    with pytest.raises(DataError, match="bad.ppm.gz"):
        read_image(bad)


def test_nifti_round_trip(tmp_path, rng):
    nib = pytest.importorskip("nibabel")
    xyz = rng.normal(size=(6, 5, 4)).astype(np.float32)  # NIfTI (x, y, z)
    img = nib.Nifti1Image(xyz, np.diag([0.5, 0.6, 0.7, 1.0]))
    img.header.set_zooms((0.5, 0.6, 0.7))
    nib.save(img, tmp_path / "v.nii.gz")
    vol = read_image(tmp_path / "v.nii.gz")
    assert vol.shape == (1, 4, 5, 6)  # (C, D, H, W) = (z, y, x)
    # percentile scaling is monotone: voxel order must follow the transpose exactly
    ref = np.transpose(xyz, (2, 1, 0))
    assert np.argmax(vol[0]) == np.argmax(ref) and np.argmin(vol[0]) == np.argmin(ref)
    assert vol.min() >= 0 and vol.max() <= 1
    np.testing.assert_allclose(read_spacing(tmp_path / "v.nii.gz"), (0.7, 0.6, 0.5), rtol=1e-6)
    lab = rng.integers(0, 3, (6, 5, 4)).astype(np.uint8)
    nib.save(nib.Nifti1Image(lab, np.eye(4)), tmp_path / "v_seg.nii.gz")
    np.testing.assert_array_equal(read_mask(tmp_path / "v_seg.nii.gz"), np.transpose(lab, (2, 1, 0)))
    (tmp_path / "broken.nii.gz").write_bytes(b"\x1f\x8b garbage")
    with pytest.raises(DataError, match="broken.nii.gz"):
        read_image(tmp_path / "broken.nii.gz")
    assert read_spacing(save(tmp_path / "p.png", lab[..., 0])) is None


def test_dicom_series_round_trip(tmp_path, rng):
    pytest.importorskip("pydicom")
    series = tmp_path / "series"
    series.mkdir()
    slices = [rng.integers(0, 1000, (6, 5)) for _ in range(3)]
    # written out of z order: the reader must sort by ImagePositionPatient
    for name, z, k in (("a.dcm", 5.0, 2), ("b.dcm", 1.0, 0), ("c.dcm", 3.0, 1)):
        write_dicom(series / name, slices[k], position=(0.0, 0.0, z), spacing=(0.8, 0.9), rescale=(2, -10))
    from localdisc.data.io import _read_volume_raw

    raw, spacing = _read_volume_raw(series)
    # DICOM's default orientation is LPS (rows run toward P, columns toward L); localdisc
    # reorients every volume to RAS, so rows and columns come out reversed
    np.testing.assert_allclose(raw, (np.stack(slices) * 2 - 10)[:, ::-1, ::-1])
    assert spacing == pytest.approx((2.0, 0.8, 0.9))
    assert read_image(series).shape == (1, 3, 6, 5)
    (series / "d.dcm").write_bytes(b"not dicom")
    with pytest.raises(DataError, match="d.dcm: unreadable DICOM"):
        read_image(series)
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(DataError, match="no .dcm files"):
        read_image(empty)
