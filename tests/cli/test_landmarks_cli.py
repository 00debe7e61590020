"""``localdisc landmarks`` end to end on tiny data with a 1-step (randomly initialized) LD run."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest
from PIL import Image

from localdisc.cli.landmarks import read_points
from localdisc.cli.main import main
from localdisc.errors import DataError

TINY = ["--encoder-channels", "4", "8", "8", "--decoder-channels", "8", "4", "--embed-dim", "4", "--grid", "2", "--batch-size", "2", "--stage", "2", "--steps", "1"]


@pytest.fixture(scope="module")
def ld_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("ldrun") / "run"
    assert main(["pretrain", "--method", "ld", "--data", "synthetic-fundus:4:64x64", "--image-size", "32", "32", "--out", str(out), *TINY]) == 0
    return out


def test_synthetic_fundus_end_to_end(ld_run, tmp_path):
    out = tmp_path / "lm"
    assert main(["landmarks", str(ld_run), "--support", "fundus_000", "--queries", "synthetic-fundus:4:64x64", "--out", str(out), "--sigma", "1", "2"]) == 0
    rows = list(csv.DictReader((out / "predictions.csv").open()))
    assert len(rows) == 3 * 2 and {r["landmark"] for r in rows} == {"optic_disc", "fovea"}
    assert all(0 <= float(r["row"]) <= 63 and 0 <= float(r["col"]) <= 63 for r in rows)
    m = json.loads((out / "metrics.json").read_text())
    assert m["overall"]["n"] == 6 and m["overall"]["mre"] >= 0 and set(m["per_landmark"]) == {"optic_disc", "fovea"}
    # the error column is the distance to the layout's own landmarks
    r = rows[0]
    e = np.hypot(float(r["row"]) - float(r["true_row"]), float(r["col"]) - float(r["true_col"]))
    assert float(r["error_px"]) == pytest.approx(e, abs=1e-2)
    assert len(list((out / "overlays").glob("*.png"))) == 3


def test_folder_with_points_and_truth_files(ld_run, tmp_path):
    rng = np.random.default_rng(0)
    big = (rng.random((60, 60, 3)) * 255).astype(np.uint8)
    folder = tmp_path / "imgs"
    folder.mkdir()
    truth = {}
    for k, (dy, dx) in enumerate([(0, 0), (3, 2), (-2, 4)]):
        Image.fromarray(big[10 + dy : 50 + dy, 10 + dx : 50 + dx]).save(folder / f"im{k}.png")
        truth[f"im{k}"] = {"a": [20 - dy, 20 - dx]}
    (tmp_path / "points.csv").write_text("name,row,col\na,20,20\n")
    (tmp_path / "truth.json").write_text(json.dumps({"landmarks": truth}))
    out = tmp_path / "lm"
    assert main(["landmarks", str(ld_run), "--support", str(folder / "im0.png"), "--points", str(tmp_path / "points.csv"),
                 "--queries", str(folder), "--truth", str(tmp_path / "truth.json"), "--out", str(out), "--spacing", "0.5", "0.5"]) == 0
    rows = list(csv.DictReader((out / "predictions.csv").open()))
    assert [r["image_id"] for r in rows] == ["im1", "im2"]  # the support is not its own query
    assert float(rows[0]["error_mm"]) == pytest.approx(0.5 * float(rows[0]["error_px"]), abs=2e-3)
    assert "overall_mm" in json.loads((out / "metrics.json").read_text())


def test_align_affine_records_its_setting_and_stays_in_the_window(ld_run, tmp_path):
    out = tmp_path / "lm"
    assert main(["landmarks", str(ld_run), "--support", "fundus_000", "--queries", "synthetic-fundus:4:64x64", "--out", str(out), "--sigma", "1",
                 "--align", "affine", "--anchor-stride", "4", "--search-radius", "0.1"]) == 0
    cfg = json.loads((out / "config.json").read_text())
    assert cfg["align"] == "affine" and cfg["anchor_stride"] == 4
    rows = list(csv.DictReader((out / "predictions.csv").open()))
    assert len(rows) == 3 * 2 and all(np.isfinite(float(r["row"])) for r in rows)


def test_several_supports_give_the_median_of_their_answers(ld_run, tmp_path):
    from localdisc.data.sources import resolve_source
    from localdisc.tasks.discover import load_run_model
    from localdisc.tasks.landmarks import OneShotLocator, SupportEnsemble

    out = tmp_path / "lm"
    assert main(["landmarks", str(ld_run), "--support", "fundus_000", "fundus_001", "fundus_002", "--queries", "synthetic-fundus:4:64x64",
                 "--out", str(out), "--sigma", "1", "--max-overlays", "0"]) == 0
    rows = list(csv.DictReader((out / "predictions.csv").open()))
    assert {r["image_id"] for r in rows} == {"fundus_003"}  # no support is its own query
    # the same answer by hand: three one-shot locators, coordinate-wise median
    model = load_run_model(ld_run)
    samples = {s.id: s for s in resolve_source("synthetic-fundus:4:64x64")}
    import torch

    from localdisc.data.records import load_sample_image

    embed = lambda x: model.method.embed(x).float()  # noqa: E731
    names = [r["landmark"] for r in rows]
    answers = []
    for sid in ("fundus_000", "fundus_001", "fundus_002"):
        loc = OneShotLocator(embed, model.size, [1.0]).fit(torch.from_numpy(load_sample_image(samples[sid], 3)), np.array([samples[sid].landmarks[n] for n in names]))
        answers.append(loc.predict([torch.from_numpy(load_sample_image(samples["fundus_003"], 3))])[0].points)
    got = np.array([[float(r["row"]), float(r["col"])] for r in rows])
    np.testing.assert_allclose(got, np.median(answers, axis=0), atol=1e-3)
    ens = SupportEnsemble([OneShotLocator(embed, model.size, [1.0]).fit(torch.from_numpy(load_sample_image(samples["fundus_000"], 3)), np.array([samples["fundus_000"].landmarks[n] for n in names]))])
    assert ens.predict([torch.from_numpy(load_sample_image(samples["fundus_003"], 3))])[0].points.shape == (len(names), 2)


def test_bad_inputs(ld_run, tmp_path, capsys):
    bad = tmp_path / "p.json"
    bad.write_text('{"a": [1, 2], "b": [1, 2, 3]}')
    with pytest.raises(DataError):
        read_points(bad)
    assert main(["landmarks", str(ld_run), "--support", "nope", "--queries", "synthetic-fundus:4:64x64", "--out", str(tmp_path / "o")]) == 2
    assert "support image not found" in capsys.readouterr().err


def test_3d_volumes(tmp_path):
    run = tmp_path / "run3d"
    assert main(["pretrain", "--method", "ld", "--data", "synthetic-3d:3:16x16x16", "--image-size", "16", "16", "16", "--out", str(run), *TINY]) == 0
    from localdisc.data.sources import resolve_source

    s = resolve_source("synthetic-3d:3:16x16x16")
    out = tmp_path / "lm3"
    assert main(["landmarks", str(run), "--support", s[0].id, "--queries", "synthetic-3d:3:16x16x16", "--out", str(out), "--sigma", "1", "--max-overlays", "1"]) == 0
    rows = list(csv.DictReader((out / "predictions.csv").open()))
    assert {"z", "row", "col", "error_px"} <= set(rows[0]) and len(rows) == 2 * len(s[0].landmarks)
    assert len(list((out / "overlays").glob("*.png"))) == 1


def test_drive_layout_queries_with_a_search_window(ld_run, tmp_path):
    # DRIVE's own folder layout (training/images/*.tif, 1st_manual/*.gif, mask/*.gif): where users run it
    rng = np.random.default_rng(0)
    root = tmp_path / "DRIVE" / "training"
    for sub in ("images", "1st_manual", "mask"):
        (root / sub).mkdir(parents=True)
    for k in (21, 22, 23):
        Image.fromarray((rng.random((40, 44, 3)) * 255).astype(np.uint8)).save(root / "images" / f"{k}_training.tif")
        Image.fromarray(np.zeros((40, 44), np.uint8)).save(root / "1st_manual" / f"{k}_manual1.gif")
        Image.fromarray(np.full((40, 44), 255, np.uint8)).save(root / "mask" / f"{k}_training_mask.gif")
    (tmp_path / "pts.json").write_text(json.dumps({"disc": [20.0, 30.0]}))
    out = tmp_path / "lm"
    args = ["landmarks", str(ld_run), "--support", str(root / "images" / "21_training.tif"), "--points", str(tmp_path / "pts.json"),
            "--queries", f"drive:{tmp_path / 'DRIVE'}", "--out", str(out), "--sigma", "1", "--search-radius", "0.1"]
    assert main(args) == 0
    rows = list(csv.DictReader((out / "predictions.csv").open()))
    assert {r["landmark"] for r in rows} == {"disc"} and len(rows) >= 2
    # the window (0.1 * 32 model px ~ 3.2 px, i.e. ~4.4 original px) keeps every prediction near the support point
    assert all(np.hypot(float(r["row"]) - 20.0, float(r["col"]) - 30.0) <= 0.1 * 32 * 44 / 32 + 1.0 for r in rows)
    assert json.loads((out / "config.json").read_text())["search_radius"] == 0.1 and not (out / "metrics.json").exists()  # no truth, no metrics
