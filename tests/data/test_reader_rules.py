"""Reader rules that hold for every format: one intensity rule no single pixel can sway, palette
masks read as class indices, EXIF orientation applied to images and masks alike, absurd
numbers and degenerate geometry refused, size limits checked from every header before
decoding, and nothing but regular files opened (a FIFO must never hang a run). Every refusal
is one line of :class:`DataError` naming the file."""

from __future__ import annotations

import io
import os
import signal
from pathlib import Path

import numpy as np
import pytest
from dicom_files import write_dicom
from PIL import Image

from localdisc.data import files
from localdisc.data import io as dio
from localdisc.data.datasets import ImageDataset, require_foreground
from localdisc.data.folders import read_manifest
from localdisc.data.io import read_image, read_mask
from localdisc.data.records import Sample
from localdisc.errors import DataError


def one_line(e: pytest.ExceptionInfo, *names: str) -> str:
    """The message, checked to be one line that names every one of ``names`` (files)."""
    msg = str(e.value)
    assert "\n" not in msg and len(msg) < 400, msg
    for n in names:
        assert n in msg, (n, msg)
    return msg


@pytest.fixture
def no_hang():
    """Fail instead of blocking forever when a reader opens a FIFO."""
    def hung(*_):
        raise AssertionError("a reader blocked on a special file")

    old = signal.signal(signal.SIGALRM, hung)
    signal.alarm(10)
    yield
    signal.alarm(0)
    signal.signal(signal.SIGALRM, old)


# ---------------------------------------------------------------- 1. intensity rule


def test_one_outlier_pixel_does_not_rescale_a_16bit_image(tmp_path, rng):
    """Two 12-bit images stored in uint16, equal but for one pixel of 4096: the rest of the
    image must read (nearly) the same, and a 12-bit image keeps its contrast."""
    base = rng.integers(100, 4000, (64, 64)).astype(np.uint16)
    spike = base.copy()
    spike[5, 7] = 4096
    Image.fromarray(base).save(tmp_path / "a.png")
    Image.fromarray(spike).save(tmp_path / "b.png")
    a, b = read_image(tmp_path / "a.png")[0], read_image(tmp_path / "b.png")[0]
    rest = np.ones(base.shape, bool)
    rest[5, 7] = False
    np.testing.assert_allclose(a[rest], b[rest], atol=0.01)
    assert a.max() == pytest.approx(1.0) and np.percentile(a, 50) > 0.3  # full contrast, not /65535


def test_volumes_are_scaled_free_of_their_units(tmp_path, rng):
    """MRI files of one dataset with maxima from 139 to 1.2e6: the same anatomy reads alike,
    whatever the dtype (float .npy, uint16 NIfTI)."""
    nib = pytest.importorskip("nibabel")
    shape = (6, 7, 8)
    anatomy = rng.random(shape)
    np.save(tmp_path / "small.npy", (anatomy * 139).astype(np.float32))
    np.save(tmp_path / "large.npy", (anatomy * 1.2e6).astype(np.float64))
    small, large = read_image(tmp_path / "small.npy"), read_image(tmp_path / "large.npy")
    np.testing.assert_allclose(small, large, atol=1e-4)
    assert small.min() == 0 and small.max() == 1
    for top in (139, 60000):  # uint16 volumes too: percentiles, not 4095/65535 by the maximum
        nib.save(nib.Nifti1Image((anatomy * top).astype(np.uint16), np.eye(4)), str(tmp_path / f"v{top}.nii.gz"))
    np.testing.assert_allclose(read_image(tmp_path / "v139.nii.gz"), read_image(tmp_path / "v60000.nii.gz"), atol=0.02)


def test_uint8_images_keep_their_dtype_range(tmp_path):
    gray = np.full((20, 20), 100, np.uint8)
    gray[0, 0] = 255
    Image.fromarray(gray).save(tmp_path / "g.png")
    np.testing.assert_allclose(read_image(tmp_path / "g.png")[0, 1:], 100 / 255, atol=1e-6)


# ---------------------------------------------------------------- 2. palette masks


def test_palette_mask_reads_its_indices_as_classes(tmp_path):
    idx = np.zeros((6, 6), np.uint8)
    idx[1:3, 1:3], idx[3:5, 3:5] = 1, 2
    im = Image.fromarray(idx, mode="P")
    im.putpalette([0, 0, 0, 255, 0, 0, 0, 255, 0] + [0] * (256 * 3 - 9))  # VOC-style: red and green, max channel 255 both
    im.save(tmp_path / "voc.png")
    mask = read_mask(tmp_path / "voc.png")
    np.testing.assert_array_equal(mask, idx.astype(np.int64))
    assert set(np.unique(mask).tolist()) == {0, 1, 2}


def test_gray_palette_gif_reads_by_its_gray_levels(tmp_path):
    """Pillow saves an RGB 0/255 mask as GIF with WHITE at index 0: its indices would invert it."""
    m = np.zeros((8, 8), np.uint8)
    m[2:5, 2:5] = 255
    Image.fromarray(m).convert("RGB").save(tmp_path / "m.gif")
    with Image.open(tmp_path / "m.gif") as im:
        assert im.mode == "P" and np.asarray(im)[0, 0] == 1  # the trap: background is index 1
    np.testing.assert_array_equal(read_mask(tmp_path / "m.gif"), (m > 0).astype(np.int64))


# ---------------------------------------------------------------- 3. EXIF orientation


@pytest.mark.parametrize("fmt", ["PNG", "JPEG"])
def test_exif_orientation_is_applied_to_images_and_masks(tmp_path, fmt):
    arr = np.zeros((4, 6), np.uint8)
    arr[0, :2] = 255  # a marker in the top-left corner
    exif = Image.Exif()
    exif[0x0112] = 6  # the camera was turned: show rotated 90 degrees clockwise
    path = tmp_path / f"photo.{fmt.lower()}"
    Image.fromarray(arr).save(path, format=fmt, exif=exif, **({"quality": 100} if fmt == "JPEG" else {}))
    image, mask = read_image(path), read_mask(path, values="binary")
    assert image.shape == (1, 6, 4) and mask.shape == (6, 4)
    upright = np.rot90(arr, -1)
    np.testing.assert_array_equal(mask, (upright > 127).astype(np.int64))
    np.testing.assert_allclose(image[0], upright / 255.0, atol=0.1 if fmt == "JPEG" else 1e-6)


# ---------------------------------------------------------------- 4. empty masks, raw values in messages


def _labeled(tmp_path, masks: list[np.ndarray]) -> ImageDataset:
    (tmp_path / "images").mkdir(parents=True)
    (tmp_path / "masks").mkdir()
    samples = []
    for i, m in enumerate(masks):
        Image.fromarray(np.full(m.shape, 90, np.uint8)).save(tmp_path / "images" / f"i{i}.png")
        Image.fromarray(m).save(tmp_path / "masks" / f"i{i}.png")
        samples.append(Sample(id=f"i{i}", image=str(tmp_path / "images" / f"i{i}.png"), mask=str(tmp_path / "masks" / f"i{i}.png")))
    return ImageDataset(samples, size=None, channels=1, with_masks=True)


def test_all_empty_masks_are_refused_naming_the_folder(tmp_path):
    ds = _labeled(tmp_path, [np.zeros((8, 8), np.uint8)] * 3)
    with pytest.raises(DataError) as e:
        require_foreground([ds])
    assert "all 3 labeled masks are empty" in one_line(e, str(tmp_path / "masks"), "i0.png")
    one = np.zeros((8, 8), np.uint8)
    one[2, 2] = 255
    require_foreground([ds, _labeled(tmp_path / "other", [one])])  # one labeled pixel anywhere is enough


def test_mask_messages_quote_the_files_own_values(tmp_path):
    full = np.full((8, 8), 255, np.uint8)  # all foreground: class 1, but the file holds 255
    ds = _labeled(tmp_path, [full, np.where(np.eye(8, dtype=bool), 255, 0).astype(np.uint8)])
    ds[0], ds[1]
    assert ds.mask_values == {0: [1], 1: [0, 1]} and ds.raw_mask_values == {0: [255], 1: [0, 255]}
    with pytest.raises(DataError) as e:
        read_mask(tmp_path / "masks" / "i0.png", num_classes=1)
    assert "the file holds values [255]" in one_line(e, "i0.png")


# ---------------------------------------------------------------- 5. absurd numbers, degenerate geometry


@pytest.mark.parametrize("name, array, problem", [
    ("complex", np.ones((4, 4), np.complex64), "complex values"),
    ("huge", np.full((4, 4), 1e300), "values up to 1e+300"),
    ("nan", np.array([[0.0, np.nan], [1.0, 2.0]]), "NaN or infinite"),
    ("inf", np.array([[0.0, np.inf], [1.0, 2.0]]), "NaN or infinite"),
    ("text", np.array([["a", "b"], ["c", "d"]]), "text values"),
])
def test_absurd_npy_values_are_one_line_naming_the_file(tmp_path, name, array, problem):
    np.save(tmp_path / f"{name}.npy", array)
    for reader in (read_image, read_mask):
        with pytest.raises(DataError) as e:
            reader(tmp_path / f"{name}.npy")
        assert problem in one_line(e, f"{name}.npy")


def test_object_npy_is_refused_from_its_header_unpickled(tmp_path, monkeypatch):
    np.save(tmp_path / "obj.npy", np.array([[{"a": 1}, None]], dtype=object), allow_pickle=True)
    monkeypatch.setattr(np, "load", lambda *a, **k: pytest.fail("np.load called on an object array"))
    with pytest.raises(DataError) as e:
        read_image(tmp_path / "obj.npy")
    assert "Python object values" in one_line(e, "obj.npy")


def _nifti_with(path: Path, **fields) -> Path:
    """A tiny valid NIfTI, then raw header fields overwritten (nibabel refuses to write these)."""
    nib = pytest.importorskip("nibabel")
    nib.save(nib.Nifti1Image(np.arange(120, dtype=np.float32).reshape(4, 5, 6), np.eye(4)), str(path))
    raw = path.read_bytes()
    hdr = nib.Nifti1Header.from_fileobj(io.BytesIO(raw))
    for k, v in fields.items():
        hdr[k] = v
    buf = io.BytesIO()
    hdr.write_to(buf)
    path.write_bytes(buf.getvalue()[:348] + raw[348:])
    return path


@pytest.mark.parametrize("name, fields, problem", [
    ("zero_sform", dict(srow_x=[0] * 4, srow_y=[0] * 4, srow_z=[0] * 4, sform_code=1), "zero length"),
    ("nan_sform", dict(srow_x=[np.nan, 0, 0, 0], sform_code=1), "NaN or infinite"),
    ("singular", dict(srow_x=[1, 1, 0, 0], srow_y=[1, 1, 0, 0], sform_code=1), "singular"),
    ("zero_pixdim", dict(pixdim=[1, 0, 1, 1, 1, 1, 1, 1]), "pixdim"),
    ("nan_pixdim", dict(pixdim=[1, np.nan, 1, 1, 1, 1, 1, 1], sform_code=0, qform_code=1), "pixdim"),
])
def test_degenerate_nifti_geometry_is_refused(tmp_path, name, fields, problem):
    path = _nifti_with(tmp_path / f"{name}.nii", **fields)
    for reader in (read_image, read_mask, dio.read_geometry, dio.check_header):
        with pytest.raises(DataError) as e:
            reader(path)
        assert problem in one_line(e, f"{name}.nii")


def test_dicom_series_with_a_slice_of_another_size_or_zero_spacing(tmp_path, rng):
    pytest.importorskip("pydicom")
    mixed = tmp_path / "mixed"
    mixed.mkdir()
    write_dicom(mixed / "a.dcm", rng.integers(0, 99, (6, 5)), position=(0, 0, 0))
    write_dicom(mixed / "b.dcm", rng.integers(0, 99, (6, 5)), position=(0, 0, 1))
    write_dicom(mixed / "c.dcm", rng.integers(0, 99, (7, 5)), position=(0, 0, 2))  # a scout of another size
    with pytest.raises(DataError) as e:
        read_image(mixed)
    assert "slice of 7x5 pixels in a series whose slices are 6x5" in one_line(e, "c.dcm")
    for spacing in ((0.0, 0.5), (float("nan"), 0.5)):
        flat = tmp_path / f"flat{spacing[0]}"
        flat.mkdir()
        write_dicom(flat / "a.dcm", rng.integers(0, 99, (6, 5)), position=(0, 0, 0), spacing=spacing)
        write_dicom(flat / "b.dcm", rng.integers(0, 99, (6, 5)), position=(0, 0, 1), spacing=spacing)
        with pytest.raises(DataError) as e:
            read_image(flat)
        assert "PixelSpacing" in one_line(e, "a.dcm")


@pytest.mark.parametrize("cell, problem", [
    ("nan", "positive finite"), ("inf", "positive finite"), ("0.5x-1", "positive finite"), ("0x1", "positive finite"),
    ("0.5x0.5x0.5", "has 3 value(s); a 2-D image needs 2"), ("0.5", "has 1 value(s); a 2-D image needs 2"),
])
def test_manifest_spacing_must_be_finite_positive_one_per_axis(tmp_path, cell, problem):
    Image.fromarray(np.zeros((4, 4), np.uint8)).save(tmp_path / "a.png")
    (tmp_path / "m.csv").write_text(f"image,spacing\na.png,{cell}\n")
    with pytest.raises(DataError) as e:
        read_manifest(tmp_path / "m.csv")
    assert problem in one_line(e, "m.csv row 2")


def test_manifest_spacing_of_a_volume_needs_three_values(tmp_path):
    np.save(tmp_path / "v.npy", np.zeros((3, 4, 5), np.float32))
    (tmp_path / "m.csv").write_text("image,spacing\nv.npy,1x0.5\n")
    with pytest.raises(DataError, match=r"m.csv row 2: spacing '1x0.5' has 2 value\(s\); a 3-D volume needs 3"):
        read_manifest(tmp_path / "m.csv")
    (tmp_path / "m.csv").write_text("image,spacing\nv.npy,2x0.5x0.5\n")
    assert read_manifest(tmp_path / "m.csv")[0].spacing == (2.0, 0.5, 0.5)


# ---------------------------------------------------------------- 6. size limits from every header


def test_npy_size_is_checked_from_its_header_before_loading(tmp_path, monkeypatch):
    np.save(tmp_path / "big.npy", np.zeros((3000, 3000), np.uint8))
    monkeypatch.setattr(files, "MAX_PIXELS", 1_000_000)
    monkeypatch.setattr(np, "load", lambda *a, **k: pytest.fail("np.load called before the size check"))
    for check in (read_image, read_mask, dio.check_header):
        with pytest.raises(DataError) as e:
            check(tmp_path / "big.npy")
        assert "header promises 3000x3000 = 9,000,000 pixels, more than the limit of 1,000,000" in one_line(e, "big.npy")
    np.save(tmp_path / "vol.npy", np.zeros((20, 30, 40), np.uint8))
    monkeypatch.setattr(files, "MAX_VOXELS", 1000)
    with pytest.raises(DataError, match=r"vol.npy: header promises 20x30x40 = 24,000 voxels"):
        read_image(tmp_path / "vol.npy")


def test_dicom_size_is_checked_from_its_header_before_decoding(tmp_path, monkeypatch, rng):
    pydicom = pytest.importorskip("pydicom")
    path = tmp_path / "bomb.dcm"
    write_dicom(path, rng.integers(0, 99, (4, 4)))
    ds = pydicom.dcmread(str(path))
    ds.Rows = ds.Columns = 12000  # a compressed 12000^2 slice would be a few hundred KB on disk
    ds.save_as(str(path))
    monkeypatch.setattr(pydicom.dataset.Dataset, "pixel_array", property(lambda self: pytest.fail("pixels decoded before the size check")))
    for check in (read_image, dio.check_header):
        with pytest.raises(DataError) as e:
            check(path)
        assert "header promises 12000x12000 = 144,000,000 pixels" in one_line(e, "bomb.dcm")
    series = tmp_path / "series"  # and the number of slices of a series
    series.mkdir()
    for z in range(3):
        write_dicom(series / f"s{z}.dcm", rng.integers(0, 99, (6, 5)), position=(0, 0, z))
    monkeypatch.setattr(files, "MAX_VOXELS", 80)
    with pytest.raises(DataError) as e:
        read_image(series)
    assert "header promises 3x6x5 = 90 voxels" in one_line(e, "series")


# ---------------------------------------------------------------- 7. special files


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs os.mkfifo")
@pytest.mark.parametrize("name", ["x.png", "x.nii.gz", "x.npy", "x.dcm", "x.ppm.gz"])
def test_a_fifo_is_refused_never_read(tmp_path, no_hang, name):
    fifo = tmp_path / name
    os.mkfifo(fifo)
    link = tmp_path / f"link_{name}"
    link.symlink_to(fifo)  # symlinks are followed to what they point at
    for p in (fifo, link):
        for reader in (read_image, read_mask, dio.check_header):
            with pytest.raises(DataError) as e:
                reader(p)
            assert "not a regular file" in one_line(e, p.name)


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="needs os.mkfifo")
def test_special_files_in_manifests_series_and_folders(tmp_path, no_hang, rng):
    os.mkfifo(tmp_path / "m.csv")
    with pytest.raises(DataError) as e:
        read_manifest(tmp_path / "m.csv")
    assert "not a regular file" in one_line(e, "m.csv")
    os.mkfifo(tmp_path / "img.png")
    (tmp_path / "ok.csv").write_text("image\nimg.png\n")
    with pytest.raises(DataError) as e:
        read_manifest(tmp_path / "ok.csv")
    assert "is not a regular file" in one_line(e, "ok.csv row 2", "img.png")
    series = tmp_path / "series"
    series.mkdir()
    write_dicom(series / "a.dcm", rng.integers(0, 99, (6, 5)))
    os.mkfifo(series / "b.dcm")
    with pytest.raises(DataError) as e:
        read_image(series)
    assert "not a regular file" in one_line(e, "b.dcm")
    (tmp_path / "dir.png").mkdir()  # a folder named like an image
    with pytest.raises(DataError) as e:
        read_image(tmp_path / "dir.png")
    assert "is a folder" in one_line(e, "dir.png")
    if Path("/dev/null").exists():
        with pytest.raises(DataError, match="/dev/null: is not a regular file"):
            read_mask("/dev/null")
