"""Folder pairs, MSD folders and CSV manifests: pairing rules and every bad input."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from localdisc.data.datasets import ImageDataset
from localdisc.data.folders import match_stem, read_folder, read_manifest, stem_of
from localdisc.data.layouts import msd
from localdisc.errors import DataError


def png(path, shape=(6, 6), value=0, dtype=np.uint8):
    path.parent.mkdir(parents=True, exist_ok=True)
    arr = np.full(shape, value, dtype)
    if value == 0 and len(shape) == 2:
        arr[2:4, 2:4] = 255
    Image.fromarray(arr).save(path)
    return path


def test_stem_and_tolerant_matching():
    from pathlib import Path

    assert stem_of(Path("a/X_seg.nii.gz")) == "X_seg"
    assert stem_of(Path("im0001.ah.ppm.gz")) == "im0001.ah"
    stems = {"X", "X_2", "IMD002", "21_training", "im0001"}
    for mask, image in (("X", "X"), ("X_mask", "X"), ("X_2_lesion", "X_2"), ("IMD002_lesion", "IMD002"),
                        ("21_training_mask", "21_training"), ("im0001.ah", "im0001"), ("X_seg", "X"),
                        ("X_manual1", "X"), ("X-anything", "X"), ("X_2_whatever", "X_2")):
        assert match_stem(mask, stems) == image, mask
    assert match_stem("Y_mask", stems) is None
    assert match_stem("X2", stems) is None  # no separator: not X's


def test_image_mask_fov_pairs(tmp_path):
    for stem, mname in (("b", "b_lesion.png"), ("a", "a.png"), ("c", "c_manual1.gif")):
        png(tmp_path / "images" / f"{stem}.jpg", (6, 6, 3), 120)
        png(tmp_path / "labels" / mname)
        png(tmp_path / "fov" / f"{stem}_mask.png", value=255)
    (tmp_path / "images" / "._a.jpg").write_bytes(b"macOS junk")
    (tmp_path / "images" / "notes.txt").write_text("ignored")
    samples = read_folder(tmp_path)
    assert [s.id for s in samples] == ["a", "b", "c"]
    assert [s.mask.rsplit("/", 1)[1] for s in samples] == ["a.png", "b_lesion.png", "c_manual1.gif"]
    assert all(s.fov.endswith(f"{s.id}_mask.png") and s.split is None for s in samples)
    item = ImageDataset(samples, size=(4, 4), channels=3, with_masks=True)[1]
    assert item["image"].shape == (3, 4, 4) and item["mask"].shape == (4, 4) and item["fov"].all()
    assert set(item["mask"].unique().tolist()) == {0, 1}


def test_unlabeled_folders(tmp_path):
    for name in ("z.png", "y.tif", "x.bmp"):
        png(tmp_path / "flat" / name)
        png(tmp_path / "nested" / "images" / name)
    flat = read_folder(tmp_path / "flat")
    assert [s.id for s in flat] == ["x", "y", "z"] and all(s.mask is None for s in flat)
    assert [s.id for s in read_folder(tmp_path / "nested")] == ["x", "y", "z"]


def test_folder_errors(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match=r"empty: no image files found \(empty folder\)"):
        read_folder(tmp_path / "empty")
    (tmp_path / "text").mkdir()
    (tmp_path / "text" / "readme.txt").write_text("x")
    with pytest.raises(DataError, match=r"text: no image files found \(it holds \['readme.txt'\]\)"):
        read_folder(tmp_path / "text")
    (tmp_path / "odd" / "scans").mkdir(parents=True)
    with pytest.raises(DataError, match=r"odd: no images found.*\['scans'\]"):
        read_folder(tmp_path / "odd")
    with pytest.raises(DataError, match="not a folder"):
        read_folder(tmp_path / "missing")

    pairs = tmp_path / "pairs"
    for s in ("a", "b", "c"):
        png(pairs / "images" / f"{s}.png")
    png(pairs / "masks" / "a_mask.png")
    with pytest.raises(DataError, match=r"masks: 2 image\(s\) without a mask, e.g. \['b.png', 'c.png'\]"):
        read_folder(pairs)
    for s in ("b", "c", "q"):
        png(pairs / "masks" / f"{s}_mask.png")
    with pytest.raises(DataError, match=r"masks: 1 mask file\(s\) without an image, e.g. \['q_mask.png'\]"):
        read_folder(pairs)
    (pairs / "masks" / "q_mask.png").unlink()
    png(pairs / "masks" / "a.png")
    with pytest.raises(DataError, match=r"two mask files for image 'a'"):
        read_folder(pairs)
    (pairs / "masks" / "a.png").unlink()
    png(pairs / "images" / "a.jpg", (6, 6, 3))
    with pytest.raises(DataError, match=r"images: duplicate stem 'a' \(a.jpg and a.png\)"):
        read_folder(pairs)
    (pairs / "images" / "a.jpg").unlink()
    assert len(read_folder(pairs)) == 3


def test_nifti_pairs_and_msd(tmp_path):
    nib = pytest.importorskip("nibabel")

    def vol(path, arr):
        path.parent.mkdir(parents=True, exist_ok=True)
        nib.save(nib.Nifti1Image(arr, np.eye(4)), path)

    rng = np.random.default_rng(0)
    for s in ("case_1", "case_0"):
        vol(tmp_path / "f" / "images" / f"{s}.nii.gz", rng.normal(size=(4, 5, 3)).astype(np.float32))
        vol(tmp_path / "f" / "masks" / f"{s}_seg.nii.gz", rng.integers(0, 3, (4, 5, 3)).astype(np.uint8))
        vol(tmp_path / "m" / "imagesTr" / f"{s}.nii.gz", rng.normal(size=(4, 5, 3)).astype(np.float32))
        vol(tmp_path / "m" / "labelsTr" / f"{s}.nii.gz", rng.integers(0, 3, (4, 5, 3)).astype(np.uint8))
    (tmp_path / "m" / "imagesTr" / "._case_0.nii.gz").write_bytes(b"resource fork")
    (tmp_path / "m" / "dataset.json").write_text(json.dumps({"labels": {"0": "background", "2": "tumour", "1": "organ"}}))
    pairs = read_folder(tmp_path / "f")
    assert [s.id for s in pairs] == ["case_0", "case_1"] and pairs[0].mask.endswith("case_0_seg.nii.gz")
    for samples in (read_folder(tmp_path / "m"), msd(str(tmp_path / "m"))):
        assert [s.id for s in samples] == ["case_0", "case_1"]
        assert samples[0].extra["class_names"] == ["background", "organ", "tumour"]
        item = ImageDataset(samples, size=(2, 4, 4), channels=1, with_masks=True, num_classes=3)[0]
        assert item["image"].shape == (1, 2, 4, 4) and item["mask"].shape == (2, 4, 4)
    with pytest.raises(DataError, match="not an MSD task folder"):
        msd(str(tmp_path / "f"))
    # a manifest in the task folder (e.g. a fixed train/test split) takes the class names from its dataset.json
    (tmp_path / "m" / "split.csv").write_text("image,mask,split\nimagesTr/case_0.nii.gz,labelsTr/case_0.nii.gz,train\n"
                                              "imagesTr/case_1.nii.gz,,test\n")
    listed = read_manifest(tmp_path / "m" / "split.csv")
    assert listed[0].extra["class_names"] == ["background", "organ", "tumour"] and "class_names" not in listed[1].extra
    (tmp_path / "m" / "dataset.json").write_text(json.dumps({"labels": {"0": "background", "2": "tumour"}}))
    with pytest.raises(DataError, match=r"dataset.json: unreadable dataset.json \(label values \[0, 2\] are not 0..1\)"):
        msd(str(tmp_path / "m"))
    (tmp_path / "m" / "dataset.json").write_text(json.dumps(["another tool's file"]))
    assert "class_names" not in read_manifest(tmp_path / "m" / "split.csv")[0].extra  # not ours: ignored


def test_manifest(tmp_path):
    png(tmp_path / "img" / "a.png")
    png(tmp_path / "img" / "b.png")
    png(tmp_path / "lab" / "a.png")
    (tmp_path / "abs").mkdir()
    csv = tmp_path / "m.csv"  # relative paths stay inside the manifest's folder (see test_hostile_files)
    csv.write_text(
        "image,mask,split,spacing,id,grade\n"
        "img/a.png,lab/a.png,Train,0.5x0.25,,3\n"
        f"{tmp_path / 'img' / 'b.png'},,validation,\"1,2\",bee,\n"
    )
    a, b = read_manifest(csv)
    assert (a.id, a.split, a.spacing, a.extra["meta"]) == ("a", "train", (0.5, 0.25), {"grade": "3"})
    assert a.mask == str(tmp_path / "lab" / "a.png")
    assert (b.id, b.split, b.spacing, b.mask) == ("bee", "val", (1.0, 2.0), None)


@pytest.mark.parametrize("body, msg", [
    ("image,mask\nimg/a.png,lab/nope.png\n", r"m\.csv row 2: mask file 'lab/nope.png' not found"),
    ("image\nimg/a.png\nimg/zz.png\n", r"m\.csv row 3: image file 'img/zz.png' not found"),
    ("picture\nimg/a.png\n", r"needs an 'image' column"),
    ("image,split\nimg/a.png,holdout\n", r"row 2: unknown split 'holdout'"),
    ("image,spacing\nimg/a.png,0.5xabc\n", r"row 2: cannot parse spacing"),
    ("image,spacing\nimg/a.png,-1x1\n", r"must be positive"),
    ("image\nimg/a.png\nimg/a.png\n", r"row 3: duplicate id 'a'"),
    ("image\n", r"manifest has no rows"),
    ("image\n\"\"\n", r"row 2: empty image path"),
    ("image,spacing\nimg/a.png,1,2\n", r"row 2: more values than header"),
])
def test_manifest_errors(tmp_path, body, msg):
    png(tmp_path / "img" / "a.png")
    (tmp_path / "m.csv").write_text(body)
    with pytest.raises(DataError, match=msg):
        read_manifest(tmp_path / "m.csv")
    with pytest.raises(DataError, match="file not found"):
        read_manifest(tmp_path / "none.csv")


def test_flat_images_with_mask_folder_and_dicom_series_dirs(tmp_path):
    from localdisc.data.folders import list_files

    for s in ("a", "b"):
        png(tmp_path / "flat" / f"{s}.png")
        png(tmp_path / "flat" / "masks" / f"{s}_mask.png")
    assert [(s.id, s.mask.endswith(f"{s.id}_mask.png")) for s in read_folder(tmp_path / "flat")] == [("a", True), ("b", True)]
    (tmp_path / "dcm" / "case.01").mkdir(parents=True)
    (tmp_path / "dcm" / "case.01" / "1.dcm").write_bytes(b"")
    (tmp_path / "dcm" / "no_slices").mkdir()
    assert list(list_files(tmp_path / "dcm")) == ["case.01"]
