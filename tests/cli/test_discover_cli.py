"""``localdisc discover`` end to end: cluster maps with Hungarian-matched Dice, shape mode, DRIVE layout."""

from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from localdisc.cli.main import main

TINY = ["--encoder-channels", "4", "8", "8", "--decoder-channels", "8", "4", "--embed-dim", "4", "--grid", "2", "--batch-size", "2", "--stage", "2", "--steps", "1", "--image-size", "32", "32"]
DATA = "synthetic-fundus:4:64x64"


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("runs")
    assert main(["pretrain", "--method", "ld", "--data", DATA, "--out", str(root / "ld"), "--num-clusters", "4", *TINY]) == 0
    shape = ["pretrain", "--method", "ld-shape", "--data", DATA, "--out", str(root / "shape"), "--prior-masks", "simulate:vessels:4",
             "--disc-width", "4", "--disc-layers", "2", *TINY]
    assert main(shape) == 0
    return root


def test_clusters_with_labels(runs, tmp_path):
    out = tmp_path / "d"
    assert main(["discover", str(runs / "ld"), "--data", DATA, "--out", str(out), "--masks-from-data", "--max-overlays", "2"]) == 0
    m = json.loads((out / "metrics.json").read_text())
    assert m["num_images"] == 4 and set(m["dice"]) == {"vessel"} and 0 <= m["mapping"]["vessel"] < 4
    maps = sorted((out / "maps").glob("*.npy"))
    assert len(maps) == 4 and np.load(maps[0]).shape == (64, 64) and np.load(maps[0]).max() < 4
    assert len(list((out / "overlays").glob("*_clusters.png"))) == 2
    # the reported Dice is the matched cluster's Dice, recomputed here from the saved maps
    from localdisc.data.records import load_sample_fov, load_sample_mask
    from localdisc.data.sources import resolve_source

    k = m["mapping"]["vessel"]
    dices = []
    for s, f in zip(resolve_source(DATA), maps):
        p, t, fov = np.load(f) == k, load_sample_mask(s) > 0, load_sample_fov(s)
        p, t = p[fov], t[fov]
        dices.append(2 * (p & t).sum() / (p.sum() + t.sum()))
    assert m["dice"]["vessel"] == pytest.approx(np.mean(dices))


@pytest.mark.parametrize("rule", ["threshold", "prototype"])
def test_shape_mode(runs, tmp_path, rule):
    out = tmp_path / "s"
    assert main(["discover", str(runs / "shape"), "--data", DATA, "--out", str(out), "--mode", "shape", "--rule", rule, "--masks-from-data"]) == 0
    m = json.loads((out / "metrics.json").read_text())
    assert {"dice", "iou", "accuracy", "auc"} <= set(m) and len(m["per_image"]) == 4
    assert len(list((out / "maps").glob("*.png"))) == 4


def test_shape_mode_needs_shape_run(runs, tmp_path, capsys):
    assert main(["discover", str(runs / "ld"), "--data", DATA, "--out", str(tmp_path / "x"), "--mode", "shape"]) == 2
    assert "ld-shape" in capsys.readouterr().err


def test_drive_layout_without_labels_and_with(runs, tmp_path):
    rng = np.random.default_rng(0)
    for k in (21, 22):
        img = (rng.random((40, 44, 3)) * 255).astype(np.uint8)
        (tmp_path / "DRIVE/training/images").mkdir(parents=True, exist_ok=True)
        (tmp_path / "DRIVE/training/1st_manual").mkdir(parents=True, exist_ok=True)
        (tmp_path / "DRIVE/training/mask").mkdir(parents=True, exist_ok=True)
        Image.fromarray(img).save(tmp_path / f"DRIVE/training/images/{k}_training.tif")
        ves = np.zeros((40, 44), np.uint8)
        ves[10:14, :] = 255
        Image.fromarray(ves).save(tmp_path / f"DRIVE/training/1st_manual/{k}_manual1.gif")
        fov = np.zeros((40, 44), np.uint8)
        fov[2:38, 2:42] = 255
        Image.fromarray(fov).save(tmp_path / f"DRIVE/training/mask/{k}_training_mask.gif")
    spec = f"drive:{tmp_path / 'DRIVE'}"
    assert main(["discover", str(runs / "shape"), "--data", spec, "--out", str(tmp_path / "o1"), "--mode", "shape"]) == 0
    assert not (tmp_path / "o1" / "metrics.json").exists() and len(list((tmp_path / "o1" / "overlays").glob("*.png"))) == 2
    assert main(["discover", str(runs / "ld"), "--data", spec, "--out", str(tmp_path / "o2"), "--masks-from-data"]) == 0
    assert json.loads((tmp_path / "o2" / "metrics.json").read_text())["num_images"] == 2


def test_kmeans_mode_on_deep_features(runs, tmp_path):
    outs = [tmp_path / "k1", tmp_path / "k2"]
    for out in outs:
        assert main(["discover", str(runs / "ld"), "--data", DATA, "--out", str(out), "--mode", "kmeans", "--num-clusters", "3", "--masks-from-data", "--seed", "1"]) == 0
    km = json.loads((outs[0] / "kmeans.json").read_text())
    assert km["features"] == "deep+intensity+position" and km["num_clusters"] == 3 and km["seed"] == 1
    assert np.array(km["centers"]).shape == (3, 8 + 1 + 2)  # deepest level (8 channels), grey value, (row, col)
    m = json.loads((outs[0] / "metrics.json").read_text())
    assert set(m["dice"]) == {"vessel"} and 0 <= m["mapping"]["vessel"] < 3
    maps = [sorted((o / "maps").glob("*.npy")) for o in outs]
    assert len(maps[0]) == 4 and all(np.array_equal(np.load(a), np.load(b)) for a, b in zip(*maps))  # same seed, same maps
    assert np.load(maps[0][0]).shape == (64, 64) and np.load(maps[0][0]).max() < 3


def test_kmeans_mode_rejects_an_unknown_feature(runs, tmp_path, capsys):
    assert main(["discover", str(runs / "ld"), "--data", DATA, "--out", str(tmp_path / "x"), "--mode", "kmeans", "--features", "deep+colour"]) == 2
    assert "unknown pixel feature colour; valid: position, intensity, embedding, deep" in capsys.readouterr().err
