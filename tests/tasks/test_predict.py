"""predict: one mask per input, identical to evaluate's, in the source's geometry (2D and 3D)."""

import csv
import shutil

import nibabel as nib
import numpy as np
import pytest
from PIL import Image
from test_evaluate import TINY, write_manifest  # noqa: E402  (tests/tasks is on sys.path: rootdir-relative modules)

from localdisc.cli.main import main
from localdisc.tasks.evaluate import evaluate
from localdisc.tasks.predict import predict
from localdisc.train.finetune import FinetuneConfig, finetune


@pytest.fixture(autouse=True)
def _cache(tmp_path_factory, monkeypatch):
    monkeypatch.setenv("LOCALDISC_CACHE", str(tmp_path_factory.getbasetemp() / "cache"))


def test_predict_on_unlabeled_pngs_equals_evaluate(tmp_path, capsys):
    sizes = [(40, 48), (36, 44), (44, 40), (40, 40), (38, 50), (42, 36)]
    data = write_manifest(tmp_path / "d", sizes, ["train"] * 4 + ["test"] * 2)
    run = finetune(FinetuneConfig(data=str(data), out=str(tmp_path / "run"), steps=3, batch_size=2, image_size=(32, 32), eval_every=3, **TINY))
    evaluate(run, split="test", out=tmp_path / "ev")
    new = tmp_path / "new_photos"  # a folder of unlabeled images, as a user has them
    new.mkdir()
    for i in (4, 5):
        shutil.copy(tmp_path / "d" / "im" / f"c{i}.png", new / f"c{i}.png")
    assert main(["predict", str(run), "--data", str(new), "--out", str(tmp_path / "pred"), "--max-overlays", "1"]) == 0
    assert "2 masks" in capsys.readouterr().out
    for i, size in ((4, sizes[4]), (5, sizes[5])):
        got = np.asarray(Image.open(tmp_path / "pred" / "predictions" / f"c{i}.png"))
        want = np.asarray(Image.open(tmp_path / "ev" / "predictions" / f"c{i}.png"))
        assert got.shape == size
        np.testing.assert_array_equal(got, want)
    rows = list(csv.DictReader((tmp_path / "pred" / "predictions.csv").open()))
    assert [r["id"] for r in rows] == ["c4", "c5"] and int(rows[0]["class1_pixels"]) == int((got_c4 := np.asarray(Image.open(tmp_path / "pred" / "predictions" / "c4.png"))).astype(bool).sum())
    assert len(list((tmp_path / "pred" / "overlays").glob("*.png"))) == 1
    # a second call needs --overwrite; the data folder itself is refused
    assert main(["predict", str(run), "--data", str(new), "--out", str(tmp_path / "pred")]) == 2
    assert main(["predict", str(run), "--data", str(new), "--out", str(new)]) == 2
    assert sorted(p.name for p in new.iterdir()) == ["c4.png", "c5.png"]
    # tta gives probabilities that average the mirrored prediction; from an exported model too
    assert main(["export", str(run), "--format", "safetensors", "--out", str(tmp_path / "m.safetensors")]) == 0
    s = predict(tmp_path / "m.safetensors", str(new), tmp_path / "pred2", tta=True, log=lambda *_: None)
    assert s["n_images"] == 2 and (tmp_path / "pred2" / "predictions" / "c4.png").is_file()
    assert got_c4.shape == sizes[4]


def test_predict_volumes_keep_the_source_affine(tmp_path):
    run = finetune(FinetuneConfig(data="synthetic-3d:5:16x16x16", out=str(tmp_path / "v3"), steps=1, batch_size=1, image_size=(16, 16, 16), **TINY))
    evaluate(run, split="test", out=tmp_path / "ev")
    vols = tmp_path / "vols"
    vols.mkdir()
    rng = np.random.default_rng(0)
    affine = np.array([[0, 0, -1.5, 10], [0, 2.0, 0, -5], [1.0, 0, 0, 3], [0, 0, 0, 1]])  # permuted, flipped, anisotropic
    nib.save(nib.Nifti1Image(rng.random((12, 14, 18)).astype(np.float32), affine), str(vols / "scan.nii.gz"))
    predict(run, str(vols), tmp_path / "p", log=lambda *_: None)
    out = nib.load(str(tmp_path / "p" / "predictions" / "scan.nii.gz"))
    assert out.shape == (12, 14, 18)
    np.testing.assert_allclose(out.affine, affine)
    rows = list(csv.DictReader((tmp_path / "p" / "predictions.csv").open()))
    assert any(k.endswith("_mm3") for k in rows[0])
    # on the evaluated test volumes, predict writes evaluate's masks
    test_ids = [p.name for p in (tmp_path / "ev" / "predictions").glob("*.nii.gz")]
    manifest = tmp_path / "m.csv"
    from localdisc.runtime.run import read_run_config
    from localdisc.tasks.evaluate import _samples_for

    samples = _samples_for(read_run_config(run), read_run_config(run)["data"], "test")
    manifest.write_text("id,image\n" + "".join(f"{s.id},{s.image}\n" for s in samples))
    predict(run, str(manifest), tmp_path / "p2", log=lambda *_: None)
    for name in test_ids:
        np.testing.assert_array_equal(np.asarray(nib.load(str(tmp_path / "p2" / "predictions" / name)).dataobj),
                                      np.asarray(nib.load(str(tmp_path / "ev" / "predictions" / name)).dataobj))
