"""Discovery task with a stub model: exact cluster maps score Dice 1 after matching; binary scores."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image

from localdisc.data.sources import resolve_source
from localdisc.tasks.discover import RunModel, binary_scores, discover, predict_maps


class _Stub(torch.nn.Module):
    """Clusters by intensity (bright -> cluster 2, dark -> cluster 0); a_0 = darkness."""

    cfg = type("C", (), {"num_clusters": 3})()

    def assign(self, x):
        g = x.mean(1, keepdim=True)
        return torch.cat([(g < 0.5).float(), torch.zeros_like(g), (g >= 0.5).float()], 1)

    def structure_probability(self, x, rule="threshold"):
        return 1 - x.mean(1)


def _folder(tmp_path, n=3):
    rng = np.random.default_rng(0)
    (tmp_path / "images").mkdir()
    (tmp_path / "masks").mkdir()
    for i in range(n):
        m = np.zeros((24, 30), np.uint8)
        r, c = rng.integers(2, 12, 2)
        m[r : r + 10, c : c + 12] = 255
        Image.fromarray(m).save(tmp_path / "images" / f"im{i}.png")
        Image.fromarray(m).save(tmp_path / "masks" / f"im{i}.png")
    return resolve_source(str(tmp_path))


def test_exact_clusters_give_dice_one(tmp_path):
    samples = _folder(tmp_path)
    model = RunModel(_Stub(), (16, 16), 1, torch.device("cpu"))
    m = discover(model, samples, tmp_path / "out", "clusters", with_masks=True, max_pictures=1)
    # the model works at 16x16 and maps are brought back with nearest: Dice is near, not exactly, 1
    assert m["mapping"] == {"class1": 2} and m["dice"]["class1"] > 0.9
    assert json.loads((tmp_path / "out" / "metrics.json").read_text())["num_images"] == 3
    assert (tmp_path / "out" / "overlays" / "0000_im0_overlay.png").is_file()


def test_predict_maps_returns_original_size(tmp_path):
    model = RunModel(_Stub(), (16, 16), 1, torch.device("cpu"))
    img = np.zeros((1, 40, 50), np.float32)
    img[:, :20] = 1
    lab = predict_maps(model, img, "clusters")
    assert lab.shape == (40, 50) and set(np.unique(lab)) == {0, 2}
    prob = predict_maps(model, img, "shape")
    assert prob.shape == (40, 50) and prob[0, 0] < 0.5 < prob[-1, -1]


def test_shape_mode_scores(tmp_path):
    samples = _folder(tmp_path)
    model = RunModel(_Stub(), (24, 30), 1, torch.device("cpu"))
    m = discover(model, samples, tmp_path / "out", "shape", with_masks=True)
    assert m["dice"] == pytest.approx(0.0) and m["auc"] == pytest.approx(0.0)  # a_0 is the background


def test_binary_scores():
    p = np.array([[1, 1, 0], [0, 0, 0]], bool)
    t = np.array([[1, 0, 0], [1, 0, 0]], bool)
    fov = np.array([[1, 1, 1], [0, 1, 1]], bool)
    s = binary_scores(p, t, p.astype(float), fov)
    assert s["dice"] == pytest.approx(2 * 1 / (2 + 1)) and s["iou"] == pytest.approx(0.5) and s["accuracy"] == pytest.approx(4 / 5)
    assert s["auc"] == pytest.approx(0.875)
    assert binary_scores(np.zeros((2, 2), bool), np.zeros((2, 2), bool))["dice"] == 1.0


def test_kmeans_mode_clusters_by_the_fitted_kmeans(tmp_path):
    from localdisc.tasks.pixel_features import PixelKMeans

    samples = _folder(tmp_path)
    model = RunModel(_Stub(), (16, 16), 1, torch.device("cpu"))
    from localdisc.data.records import load_sample_image

    km = PixelKMeans("intensity", 2, model.size, seed=0)
    km.fit([km.features(load_sample_image(s, 1)) for s in samples])
    m = discover(model, samples, tmp_path / "out", "kmeans", with_masks=True, max_pictures=0, kmeans=km)
    bright = int(km.kmeans.cluster_centers_[:, 0].argmax())
    assert m["mapping"] == {"class1": bright} and m["dice"]["class1"] > 0.9
    with pytest.raises(Exception, match="PixelKMeans"):
        discover(model, samples, tmp_path / "out2", "kmeans")
