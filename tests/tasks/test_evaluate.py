import csv
import json

import numpy as np
import pytest
import torch
from PIL import Image

from localdisc.tasks.evaluate import evaluate, predict_probs
from localdisc.train.finetune import FinetuneConfig, finetune

TINY = dict(encoder_channels=(4, 8, 8), decoder_channels=(8, 8))


@pytest.fixture(autouse=True)
def _cache(tmp_path_factory, monkeypatch):
    monkeypatch.setenv("LOCALDISC_CACHE", str(tmp_path_factory.getbasetemp() / "cache"))


def write_manifest(root, sizes, splits):
    """Gray images of varying sizes with a bright disc labeled as class 1; manifest with splits."""
    (root / "im").mkdir(parents=True)
    rng = np.random.default_rng(0)
    rows = ["image,mask,split"]
    for i, ((h, w), split) in enumerate(zip(sizes, splits)):
        yy, xx = np.mgrid[:h, :w]
        disc = (yy - h * rng.uniform(0.3, 0.7)) ** 2 + (xx - w * rng.uniform(0.3, 0.7)) ** 2 < (min(h, w) / 4) ** 2
        img = (disc * 160 + rng.integers(0, 60, (h, w))).astype(np.uint8)
        Image.fromarray(img).save(root / "im" / f"c{i}.png")
        Image.fromarray(disc.astype(np.uint8) * 255).save(root / "im" / f"c{i}_mask.png")
        rows.append(f"im/c{i}.png,im/c{i}_mask.png,{split}")
    (root / "data.csv").write_text("\n".join(rows) + "\n")
    return root / "data.csv"


class Threshold(torch.nn.Module):
    """A 'network' whose class-1 logit is the image itself: tests resampling, not learning."""

    def forward(self, x):
        return torch.cat([torch.full_like(x[:, :1], 0.5), x[:, :1]], 1) * 20


def test_probabilities_return_to_original_size():
    h, w = 37, 53
    yy, xx = np.mgrid[:h, :w]
    mask = ((yy - 18) ** 2 + (xx - 20) ** 2 < 100).astype(np.float32)
    probs = predict_probs(Threshold(), mask[None], {"image_size": [32, 32], "patch_size": []}, "cpu")
    assert probs.shape == (2, h, w)
    torch.testing.assert_close(probs.sum(0), torch.ones(h, w))
    pred = probs.argmax(0).numpy()
    inter = (pred * mask).sum()
    assert 2 * inter / (pred.sum() + mask.sum()) > 0.95


def test_evaluate_end_to_end_original_resolution(tmp_path):
    sizes = [(40, 48), (36, 44), (44, 40), (40, 40), (38, 50), (42, 36)]
    data = write_manifest(tmp_path / "d", sizes, ["train"] * 4 + ["test"] * 2)
    run = finetune(FinetuneConfig(data=str(data), out=str(tmp_path / "run"), steps=3, batch_size=2, image_size=(32, 32), eval_every=3, **TINY))
    summary = evaluate(run, split="test", out=tmp_path / "ev", save_probabilities=True)
    assert summary["n_images"] == 2 and summary["split"] == "test"
    rows = list(csv.DictReader((tmp_path / "ev" / "per_image.csv").open()))
    assert [r["id"] for r in rows] == ["c4", "c5"]
    assert {"dice_class1", "iou_class1", "hd95_class1", "dice_mean"} <= set(rows[0])
    for sid, size in (("c4", sizes[4]), ("c5", sizes[5])):
        pred = np.asarray(Image.open(tmp_path / "ev" / "predictions" / f"{sid}.png"))
        assert pred.shape == size and set(np.unique(pred)) <= {0, 255}  # original size, binary PNG
        probs = np.load(tmp_path / "ev" / "probabilities" / f"{sid}.npy")
        assert probs.shape == (2, *size) and probs.dtype == np.float16
        np.testing.assert_array_equal(probs.astype(np.float32).argmax(0) * 255, pred)
    # overlays: the worst and the best image by Dice (two images: the median is one of them), named by case
    cases = json.loads((tmp_path / "ev" / "overlays" / "cases.json").read_text())
    by_dice = sorted(rows, key=lambda r: float(r["dice_mean"]))
    assert [c["id"] for c in cases] == [by_dice[0]["id"], by_dice[-1]["id"]] or float(by_dice[0]["dice_mean"]) == float(by_dice[-1]["dice_mean"])
    assert cases[0]["case"] == "worst" and all((tmp_path / "ev" / "overlays" / c["file"]).is_file() for c in cases)
    on_disk = json.loads((tmp_path / "ev" / "summary.json").read_text())
    assert on_disk["metrics"]["dice_class1"]["n"] == 2
    # mean in summary == mean of the per-image rows
    assert on_disk["metrics"]["dice_class1"]["mean"] == pytest.approx(np.mean([float(r["dice_class1"]) for r in rows]), abs=1e-5)


def test_evaluate_vessel_and_3d(tmp_path):
    run = finetune(FinetuneConfig(data="synthetic-fundus:8:32x32", out=str(tmp_path / "v"), steps=2, batch_size=2, image_size=(32, 32), **TINY))
    s = evaluate(run, split="test")
    assert "auc" in s["metrics"] and "accuracy" in s["metrics"]
    run3 = finetune(FinetuneConfig(data="synthetic-3d:5:16x16x16", out=str(tmp_path / "v3"), steps=1, batch_size=1, image_size=(16, 16, 16), **TINY))
    s3 = evaluate(run3, split="test")
    import nibabel as nib

    pred = next((run3 / "eval-test" / "predictions").glob("*.nii.gz"))
    assert nib.load(str(pred)).shape == (16, 16, 16)
    assert {"dice_tube", "dice_blob"} <= set(s3["metrics"])


def test_overlay_cases_are_worst_median_best_then_spread():
    from localdisc.tasks.evaluate import overlay_cases

    dice = [0.5, 0.9, 0.1, 0.7, float("nan"), 0.3]
    assert overlay_cases(dice, 3) == [(2, "worst"), (0, "median"), (1, "best")]  # NaN never drawn as a case
    assert overlay_cases(dice[:2], 3) == [(0, "worst"), (1, "best")]
    ranked = overlay_cases(list(range(60)), 7)
    assert ranked[:3] == [(0, "worst"), (30, "median"), (59, "best")]
    assert len({i for i, _ in ranked}) == 7 and all(case.startswith("rank") for _, case in ranked[3:])
    assert overlay_cases(dice, 0) == []
    assert overlay_cases(dice, 2) == [(2, "worst"), (1, "best")]


def test_volume_hd95_in_mm_from_the_header(tmp_path):
    """A NIfTI volume's own voxel size makes HD95 mm when the data state none; a stated spacing wins."""
    import nibabel as nib

    rng = np.random.default_rng(0)
    rows = ["id,image,mask,split,spacing"]
    for i in range(4):
        mask = np.zeros((16, 16, 16), np.uint8)
        mask[4:10, 5:11 + i, 4:12] = 1
        image = (rng.random((16, 16, 16)) * 0.3 + mask * 0.6).astype(np.float32)
        affine = np.diag([2.0, 2.0, 2.0, 1.0])
        nib.save(nib.Nifti1Image(image, affine), tmp_path / f"v{i}.nii.gz")
        nib.save(nib.Nifti1Image(mask, affine), tmp_path / f"m{i}.nii.gz")
        rows.append(f"v{i},v{i}.nii.gz,m{i}.nii.gz,{'test' if i == 3 else 'train'},")
    (tmp_path / "header.csv").write_text("\n".join(rows) + "\n")
    (tmp_path / "stated.csv").write_text("\n".join([rows[0], *(r + "1x1x1" for r in rows[1:])]) + "\n")
    run = finetune(FinetuneConfig(data=str(tmp_path / "header.csv"), out=str(tmp_path / "r"), steps=2, batch_size=2, image_size=(16, 16, 16),
                                  val_fraction=0, **TINY))
    header = evaluate(run, split="test", out=tmp_path / "e1", overlays=False)
    stated = evaluate(run, data=str(tmp_path / "stated.csv"), split="test", out=tmp_path / "e2", overlays=False)
    assert header["hd95_unit"] == "mm" and stated["hd95_unit"] == "mm"
    hd = lambda s: s["metrics"]["hd95_class1"]["mean"]  # noqa: E731
    assert np.isfinite(hd(stated)) and hd(stated) > 0
    assert hd(header) == pytest.approx(2 * hd(stated))
