"""Volumes keep their place in the patient: affines survive reading, training, prediction and
writing; volumes are reoriented to RAS; DICOM series are grouped and sorted along the normal."""

from __future__ import annotations

import csv

import numpy as np
import pytest
from dicom_files import write_dicom

from localdisc.data.geometry import geometry_of, read_dicom, to_localdisc, to_source, write_nifti
from localdisc.data.io import read_image, read_mask, read_volume

nib = pytest.importorskip("nibabel")


def oblique_affine(spacing=(0.7, 0.9, 2.5), angle=0.35, lps=False) -> np.ndarray:
    """Rotated about two axes, anisotropic, translated; optionally LPS (x and y flipped)."""
    c, s = np.cos(angle), np.sin(angle)
    rz = np.array([[c, -s, 0], [s, c, 0], [0, 0, 1]])
    rx = np.array([[1, 0, 0], [0, np.cos(angle / 2), -np.sin(angle / 2)], [0, np.sin(angle / 2), np.cos(angle / 2)]])
    a = np.eye(4)
    a[:3, :3] = rz @ rx @ np.diag(spacing)
    a[:3, 3] = [-40.0, 12.5, 80.0]
    return np.diag([-1.0, -1.0, 1.0, 1.0]) @ a if lps else a


def asymmetric_mask(shape=(12, 14, 10)) -> np.ndarray:
    m = np.zeros(shape, np.uint8)
    m[2:7, 3:6, 1:4] = 1  # an L-shaped object far from every mirror symmetry
    m[2:4, 6:11, 1:4] = 1
    return m


@pytest.mark.parametrize("lps", [False, True])
def test_reorient_and_write_back_is_voxel_exact(tmp_path, lps):
    data = asymmetric_mask()
    affine = oblique_affine(lps=lps)
    geom = geometry_of(affine, data.shape)
    ras = to_localdisc(data, geom)
    # RAS: world x grows along the array's W axis, world z along D
    world = lambda ijk: (geom.canonical_affine() @ np.array([*ijk, 1.0]))[:3]  # noqa: E731
    step = world((0, 0, 1)) - world((0, 0, 0))  # one voxel along canonical z = D
    assert step[2] > 0 and abs(step[2]) == max(abs(step))
    assert (world((1, 0, 0)) - world((0, 0, 0)))[0] > 0
    np.testing.assert_array_equal(to_source(ras, geom), data)
    path = write_nifti(ras, geom, tmp_path / "m.nii.gz")
    back = nib.load(str(path))
    np.testing.assert_allclose(back.affine, affine, atol=1e-5)
    np.testing.assert_array_equal(np.asarray(back.dataobj), data)
    # reading the written file gives the same localdisc array
    np.testing.assert_array_equal(read_mask(path), ras.astype(np.int64))


def test_lps_and_ras_files_of_one_scan_read_alike(tmp_path):
    data = asymmetric_mask().astype(np.float32) * 100
    ras_aff = np.diag([0.8, 0.8, 2.0, 1.0])
    nib.save(nib.Nifti1Image(data, ras_aff), str(tmp_path / "ras.nii.gz"))
    # the same scan stored LPS: x and y voxel order reversed, affine flipped to match
    flip = np.diag([-1.0, -1.0, 1.0, 1.0])
    lps_aff = flip @ ras_aff
    lps_aff[:3, 3] = ras_aff[:3, :3] @ np.array([data.shape[0] - 1, data.shape[1] - 1, 0])
    nib.save(nib.Nifti1Image(data[::-1, ::-1].copy(), lps_aff), str(tmp_path / "lps.nii.gz"))
    np.testing.assert_array_equal(read_image(tmp_path / "ras.nii.gz"), read_image(tmp_path / "lps.nii.gz"))
    a, ga = read_volume(tmp_path / "ras.nii.gz")
    assert ga.spacing == pytest.approx((2.0, 0.8, 0.8))


def test_dicom_two_interleaved_series_and_a_tilted_normal(tmp_path):
    pytest.importorskip("pydicom")
    from localdisc.errors import DataError

    rng = np.random.default_rng(0)
    t = 0.3  # tilted: the slice normal is not the z axis
    row_cos, col_cos = np.array([np.cos(t), 0, -np.sin(t)]), np.array([0.0, 1.0, 0.0])
    normal = np.cross(row_cos, col_cos)
    origin = np.array([10.0, -20.0, 30.0])
    a = [rng.integers(0, 1000, (6, 5)) for _ in range(4)]
    b = [rng.integers(0, 1000, (6, 5)) for _ in range(3)]
    names = iter(f"im{k:02d}.dcm" for k in rng.permutation(7))  # file names interleave the two series, in no order
    for k in (2, 0, 3, 1):
        write_dicom(tmp_path / next(names), a[k], origin + 1.5 * k * normal, [*row_cos, *col_cos], "1.2.3.A", number=10 - k)
    for k in (1, 2, 0):
        write_dicom(tmp_path / next(names), b[k], origin + 3.0 * k * normal + [0, 0, 5], [1, 0, 0, 0, 1, 0], "1.2.3.B")
    with pytest.raises(DataError, match="holds 2 DICOM series; name one"):
        read_image(tmp_path)
    data, geom = read_dicom(f"{tmp_path}#1.2.3.A")
    # sorted along the normal (not by file name, z or InstanceNumber), (columns, rows, slices)
    np.testing.assert_array_equal(data, np.stack([s.T for s in a], -1).astype(np.float32))
    ijk_to_world = geom.affine
    first = np.diag([-1, -1, 1]) @ origin  # DICOM is LPS, the affine RAS
    np.testing.assert_allclose(ijk_to_world[:3, 3], first, atol=1e-6)
    np.testing.assert_allclose(ijk_to_world[:3, 2], np.diag([-1, -1, 1]) @ (1.5 * normal), atol=1e-6)
    np.testing.assert_allclose(ijk_to_world[:3, 0], np.diag([-1, -1, 1]) @ (row_cos * 0.6), atol=1e-6)
    assert geom.spacing == pytest.approx((1.5, 0.8, 0.6), abs=1e-6)
    vol_b = read_image(f"{tmp_path}#1.2.3.B")
    assert vol_b.shape == (1, 3, 6, 5)


def test_oblique_and_lps_nifti_finetune_evaluate_keep_the_affine(tmp_path):
    """A tiny 3D model trained and evaluated on oblique/LPS NIfTI: every predicted NIfTI has its
    source's affine and voxel order, and the Dice computed from the written files with nibabel
    alone equals localdisc's."""
    from localdisc.tasks.evaluate import evaluate
    from localdisc.train.finetune import FinetuneConfig, finetune

    rng = np.random.default_rng(1)
    rows = []
    for i in range(6):
        mask = np.zeros((16, 16, 12), np.uint8)
        x, y = rng.integers(2, 7, 2)
        mask[x : x + 7, y : y + 4, 2:9] = 1
        mask[x : x + 3, y + 4 : y + 9, 2:9] = 1  # asymmetric
        image = mask * 800.0 + rng.normal(0, 40, mask.shape)
        aff = oblique_affine(lps=i % 2 == 1)
        nib.save(nib.Nifti1Image(image.astype(np.float32), aff), str(tmp_path / f"im{i}.nii.gz"))
        nib.save(nib.Nifti1Image(mask, aff), str(tmp_path / f"m{i}.nii.gz"))
        rows.append({"image": f"im{i}.nii.gz", "mask": f"m{i}.nii.gz", "split": "test" if i >= 4 else "train"})
    with open(tmp_path / "data.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=["image", "mask", "split"])
        w.writeheader()
        w.writerows(rows)
    run = finetune(FinetuneConfig(data=str(tmp_path / "data.csv"), out=str(tmp_path / "run"), steps=40, batch_size=2, lr=1e-2,
                                  image_size=(12, 16, 16), val_fraction=0, encoder_channels=(4, 8), decoder_channels=(8,), norm="instance", augment=False))
    summary = evaluate(run, split="test", out=tmp_path / "ev", overlays=False, save_probabilities=True)
    per_image = {r["id"]: float(r["dice_class1"]) for r in csv.DictReader((tmp_path / "ev" / "per_image.csv").open())}
    for i in (4, 5):
        src = nib.load(str(tmp_path / f"m{i}.nii.gz"))
        pred = nib.load(str(next((tmp_path / "ev" / "predictions").glob(f"*im{i}*.nii.gz"))))
        np.testing.assert_allclose(pred.affine, src.affine, atol=1e-5)
        p, t = np.asarray(pred.dataobj) > 0, np.asarray(src.dataobj) > 0
        assert p.shape == t.shape and p.any()
        probs = nib.load(str(next((tmp_path / "ev" / "probabilities").glob(f"*im{i}*.nii.gz"))))
        np.testing.assert_allclose(probs.affine, src.affine, atol=1e-5)
        assert probs.shape == (*t.shape, 2)
        np.testing.assert_array_equal(np.asarray(probs.dataobj).argmax(-1) > 0, p)  # the probabilities and the mask agree voxel for voxel
        dice = 2 * (p & t).sum() / (p.sum() + t.sum())
        assert dice == pytest.approx(per_image[next(k for k in per_image if f"im{i}" in k)], abs=1e-5)
        assert dice > 0.5  # the model found the object: a flipped or transposed write would not overlay it
    assert summary["n_images"] == 2


def test_3d_path_end_to_end_on_a_real_mri(tmp_path):
    """A real brain MRI that ships with nibabel (33x41x25, 2 mm, LAS orientation): LD pretraining,
    fine-tuning from it on head masks (Otsu, as labels), evaluation; the predicted NIfTI carries
    the scan's affine and overlays it."""
    import os
    import shutil

    from skimage.filters import threshold_otsu

    from localdisc.cli.main import main

    src = os.path.join(os.path.dirname(nib.__file__), "tests", "data")
    rows = []
    for name, split, noise in (("anatomical.nii", "test", 0), ("anatomical.nii", "train", 1), ("reoriented_anat_moved.nii", "train", 0)):
        img = nib.load(os.path.join(src, name))
        data = np.asarray(img.dataobj, dtype=np.float32)
        if noise:
            data = data + np.random.default_rng(noise).normal(0, 0.05 * data.std(), data.shape).astype(np.float32)
        stem = f"{split}{len(rows)}"
        nib.save(nib.Nifti1Image(data, img.affine), str(tmp_path / f"{stem}.nii.gz"))
        nib.save(nib.Nifti1Image((data > threshold_otsu(data)).astype(np.uint8), img.affine), str(tmp_path / f"{stem}_mask.nii.gz"))
        rows.append(f"{stem}.nii.gz,{stem}_mask.nii.gz,{split}")
    (tmp_path / "data.csv").write_text("image,mask,split\n" + "\n".join(rows) + "\n")
    tiny = ["--encoder-channels", "4", "8", "--decoder-channels", "8", "--norm", "instance", "--image-size", "16", "24", "24", "--batch-size", "2"]
    assert main(["pretrain", "--method", "ld", "--data", str(tmp_path / "data.csv"), "--out", str(tmp_path / "ld"), "--steps", "2",
                 "--grid", "2", "--embed-dim", "4", "--picture-every", "0", *tiny]) == 0
    assert main(["finetune", "--data", str(tmp_path / "data.csv"), "--out", str(tmp_path / "ft"), "--init", str(tmp_path / "ld"), "--steps", "30",
                 "--lr", "0.01", "--val-fraction", "0", "--augment", "false", *tiny[5:]]) == 0
    assert main(["evaluate", str(tmp_path / "ft"), "--out", str(tmp_path / "ev"), "--max-overlays", "1"]) == 0
    pred = nib.load(str(next((tmp_path / "ev" / "predictions").glob("*.nii.gz"))))
    truth = nib.load(str(tmp_path / "test0_mask.nii.gz"))
    np.testing.assert_allclose(pred.affine, truth.affine, atol=1e-5)
    p, t = np.asarray(pred.dataobj) > 0, np.asarray(truth.dataobj) > 0
    assert p.shape == t.shape == (33, 41, 25)
    assert 2 * (p & t).sum() / (p.sum() + t.sum()) > 0.7  # aligned voxel for voxel with the scan's own mask
    shutil.rmtree(tmp_path / "ld")
