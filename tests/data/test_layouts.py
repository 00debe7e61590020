"""Public-dataset layouts: PH2 and CXR on the real data, fundus sets on tiny synthetic copies."""

from __future__ import annotations

import gzip

import numpy as np
import pytest
from PIL import Image

from localdisc.data.datasets import ImageDataset
from localdisc.data.layouts import chase, cxr, drive, hrf, ph2, stare
from localdisc.data.records import Sample, compose_mask, derive_fov, load_sample_fov, load_sample_image, load_sample_mask
from localdisc.data.sources import LAYOUTS
from localdisc.errors import DataError


def test_layouts_registered():
    assert {"ph2", "cxr", "drive", "stare", "chase", "hrf", "msd"} <= set(LAYOUTS)


# ---------------------------------------------------------------- real data
def test_ph2(shared_data):
    samples = ph2(str(shared_data / "PH2"))
    assert len(samples) == 200
    assert sum(s.split == "train" for s in samples) == 140 and sum(s.split == "test" for s in samples) == 60
    assert sorted({s.extra["diagnosis"] for s in samples}) == [0, 1, 2]
    s = samples[0]
    assert s.extra["class_names"] == ["background", "lesion"]
    img, mask = load_sample_image(s), load_sample_mask(s, num_classes=2)
    assert img.shape[0] == 3 and mask.shape == img.shape[1:]
    assert set(np.unique(mask)) == {0, 1} and 0.01 < mask.mean() < 0.99


def test_cxr_samples(shared_data):
    samples = cxr(str(shared_data / "CXR"))
    assert len(samples) == 98
    train = [s for s in samples if s.split == "train"]
    test = [s for s in samples if s.split == "test"]
    assert (len(train), len(test)) == (66, 32)
    assert not {s.extra["patient"] for s in train} & {s.extra["patient"] for s in test}
    s = samples[0]
    assert s.mask is None and s.extra["flip_pairs"] == [(1, 2)] and s.extra["channels"] == 1
    assert s.extra["class_names"] == ["background", "Left Lung", "Right Lung", "Cardiomediastinum"]


def test_cxr_composed_masks(shared_data):
    samples = cxr(str(shared_data / "CXR"))[::8]  # 13 images keep the test fast
    for s in samples:
        img = load_sample_image(s, channels=s.extra["channels"])
        mask = load_sample_mask(s, num_classes=4)
        assert img.shape[0] == 1 and mask.shape == img.shape[1:], s.image
        assert set(np.unique(mask)) == {0, 1, 2, 3}, s.image
        # the patient's left lung is on the image's right (true for all 98 images)
        w = mask.shape[1]
        assert np.nonzero(mask == 1)[1].mean() > w / 2 > np.nonzero(mask == 2)[1].mean(), s.image
    # cached per process: a second call returns equal (but independent) arrays
    a, b = load_sample_mask(samples[0]), load_sample_mask(samples[0])
    assert np.array_equal(a, b) and a is not b


def test_cxr_overlap_rule_and_structures(shared_data):
    root = str(shared_data / "CXR")
    s = cxr(root)[3]
    full = compose_mask(s)
    heart_only = compose_mask(cxr(root, structures=["Cardiomediastinum"])[3])
    lungs = compose_mask(cxr(root, structures="Left Lung,Right Lung")[3])
    # later structures win: every cardiomediastinum pixel stays class 3, lungs fill the rest
    np.testing.assert_array_equal(full == 3, heart_only == 1)
    assert ((lungs > 0) & (heart_only == 1)).any()  # the outlines really overlap
    np.testing.assert_array_equal(full[(heart_only == 0)], lungs[(heart_only == 0)])
    with pytest.raises(DataError, match="4 classes"):
        compose_mask(s, num_classes=3)
    with pytest.raises(DataError, match="no outline of \\['Nowhere'\\]"):
        cxr(root, structures=["Nowhere"])


# ---------------------------------------------------------------- synthetic fundus layouts
def fundus(h=48, w=60, seed=0) -> np.ndarray:
    """RGB uint8: a bright disc (the camera aperture) on black, with noise."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:h, :w]
    disc = (yy - h / 2) ** 2 + (xx - w / 2) ** 2 < (min(h, w) / 2 - 2) ** 2
    img = rng.integers(0, 8, (h, w, 3)).astype(np.uint8)
    img[disc] = rng.integers(100, 220, (disc.sum(), 3))
    return img


def vessels(h=48, w=60, value=255) -> np.ndarray:
    m = np.zeros((h, w), np.uint8)
    m[h // 2, 5:-5] = value
    m[4:-4, w // 2] = value
    return m


def save(path, arr, fmt=None):
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(arr).save(path, format=fmt)


def check_vessel_set(samples, n, fov_from_files):
    assert len(samples) == n
    for s in samples:
        assert s.extra["task"] == "vessel" and s.extra["class_names"] == ["background", "vessel"]
        assert bool(s.extra.get("fov_from_image")) != fov_from_files
    item = ImageDataset(samples, size=(12, 15), channels=3, with_masks=True, num_classes=2)[0]
    assert item["image"].shape == (3, 12, 15)
    assert set(item["mask"].unique().tolist()) == {0, 1}
    assert 0.3 < item["fov"].float().mean() < 0.9  # the aperture disc, not the whole frame


def test_drive(tmp_path):
    for sub, nums in (("training", (21, 22)), ("test", (1, 2, 3))):
        for k in nums:
            save(tmp_path / sub / "images" / f"{k:02d}_{sub}.tif", fundus(seed=k))
            save(tmp_path / sub / "1st_manual" / f"{k:02d}_manual1.gif", vessels())
            fov = (np.array(Image.fromarray(fundus(seed=k)).convert("L")) > 50).astype(np.uint8) * 255
            save(tmp_path / sub / "mask" / f"{k:02d}_{sub}_mask.gif", fov)
    samples = drive(str(tmp_path))
    assert [(s.id, s.split) for s in samples] == [("21_training", "train"), ("22_training", "train"),
                                                    ("01_test", "test"), ("02_test", "test"), ("03_test", "test")]
    assert samples[0].mask.endswith("21_manual1.gif") and samples[0].fov.endswith("21_training_mask.gif")
    check_vessel_set(samples, 5, fov_from_files=True)
    (tmp_path / "test" / "1st_manual" / "03_manual1.gif").unlink()
    with pytest.raises(DataError, match=r"1st_manual: 1 image\(s\) without a manual segmentation, e.g. \['03_test.tif'\]"):
        drive(str(tmp_path))
    with pytest.raises(DataError, match="expected DRIVE subfolders"):
        drive(str(tmp_path / "test" / "images"))


def test_stare_plain_and_gz(tmp_path):
    for k in (1, 2, 3):
        save(tmp_path / "stare-images" / f"im{k:04d}.ppm", fundus(seed=k))
    save(tmp_path / "labels-ah" / "im0001.ah.ppm", np.repeat(vessels()[..., None], 3, -1))
    save(tmp_path / "labels-ah" / "im0002.ah.ppm", np.repeat(vessels()[..., None], 3, -1))
    gz = tmp_path / "labels-ah" / "im0002.ah.ppm.gz"
    gz.write_bytes(gzip.compress((tmp_path / "labels-ah" / "im0002.ah.ppm").read_bytes()))
    (tmp_path / "labels-ah" / "im0002.ah.ppm").unlink()
    samples = stare(str(tmp_path))  # im0003 has no label: not used
    assert [s.id for s in samples] == ["im0001", "im0002"] and all(s.split is None for s in samples)
    check_vessel_set(samples, 2, fov_from_files=False)
    save(tmp_path / "labels-ah" / "im0009.ah.ppm", vessels())
    with pytest.raises(DataError, match=r"labels-ah: 1 label file\(s\) without an image, e.g. \['im0009.ah.ppm'\]"):
        stare(str(tmp_path))


def test_chase(tmp_path):
    for k in ("01L", "01R", "02L"):
        save(tmp_path / f"Image_{k}.jpg", fundus(seed=len(k)))
        save(tmp_path / f"Image_{k}_1stHO.png", vessels(value=1))
        save(tmp_path / f"Image_{k}_2ndHO.png", vessels(value=1))
    samples = chase(str(tmp_path))
    assert [s.id for s in samples] == ["Image_01L", "Image_01R", "Image_02L"]
    assert samples[0].mask.endswith("Image_01L_1stHO.png")
    assert chase(str(tmp_path), annotator="2ndHO")[0].mask.endswith("_2ndHO.png")
    check_vessel_set(samples, 3, fov_from_files=False)
    (tmp_path / "Image_02L_1stHO.png").unlink()
    with pytest.raises(DataError, match=r"Image_02L.jpg"):
        chase(str(tmp_path))


def test_hrf(tmp_path):
    for k in ("01_dr", "01_h", "02_g"):
        save(tmp_path / "images" / f"{k}.JPG", fundus(), fmt="JPEG")
        save(tmp_path / "manual1" / f"{k}.tif", vessels())
        save(tmp_path / "mask" / f"{k}_mask.tif", np.repeat(((fundus()[..., 0] > 50) * 255).astype(np.uint8)[..., None], 3, -1))
    samples = hrf(str(tmp_path))
    assert [s.id for s in samples] == ["01_dr", "01_h", "02_g"]
    assert samples[0].fov.endswith("01_dr_mask.tif")
    check_vessel_set(samples, 3, fov_from_files=True)


def test_derive_fov(tmp_path):
    img = fundus(40, 40)
    save(tmp_path / "f.png", img)
    truth = img[..., 0] > 50
    fov = derive_fov(Sample(id="f", image=str(tmp_path / "f.png")))
    assert fov.dtype == bool and fov.shape == truth.shape
    assert (fov & ~truth).sum() == 0  # eroded inside the aperture
    assert fov.sum() > 0.8 * truth.sum()
    fov2 = load_sample_fov(Sample(id="f", image=str(tmp_path / "f.png"), extra={"fov_from_image": True}))
    np.testing.assert_array_equal(fov, fov2)


def test_layout_missing_folder(tmp_path):
    for fn in (ph2, cxr, drive, stare, chase, hrf):
        with pytest.raises(DataError, match="folder not found"):
            fn(str(tmp_path / "nope"))
