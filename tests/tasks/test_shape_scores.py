"""Scores of shape-guided discovery (tasks/shape_scores.py), with stand-in models whose answers are known."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
import torch
from PIL import Image

from localdisc.data.records import Sample, load_sample_fov, load_sample_mask
from localdisc.data.sources import resolve_source
from localdisc.tasks.discover import RunModel
from localdisc.tasks.shape_scores import lung_union, retina_panels, retina_photograph, score_lungs, score_vessel_rules


class ConstantRules(torch.nn.Module):
    """structure_probability: a constant per rule (threshold 0.9: all structure; argmax 0; prototype 0.3)."""

    def structure_probability(self, x, rule="threshold"):
        return torch.full((x.shape[0], *x.shape[2:]), {"threshold": 0.9, "argmax": 0.0, "prototype": 0.3}[rule])


class DarkIsStructure(torch.nn.Module):
    """ld-shape stand-in: the dark pixels are the structure; as a control (K=3): cluster 1 = dark, 0 = bright."""

    cfg = SimpleNamespace(num_clusters=3)

    def structure_probability(self, x, rule="threshold"):
        return (x.mean(1) < 0.5).float()

    def assign(self, x):
        dark = (x.mean(1) < 0.5).float()
        return torch.stack([1 - dark, dark, torch.zeros_like(dark)], 1)


def _model(method, size=(48, 48), channels=3):
    return RunModel(method, size, channels, torch.device("cpu"))


def test_each_rule_is_scored_inside_the_fov_beside_the_baselines():
    samples = [s for s in resolve_source("synthetic-fundus:4:48x48") if s.split == "test"] or resolve_source("synthetic-fundus:4:48x48")[:1]
    scores = score_vessel_rules(_model(ConstantRules()), samples)
    assert list(scores) == ["ld-shape threshold", "ld-shape argmax", "ld-shape prototype", "otsu", "frangi"]
    fractions = [(load_sample_mask(s) > 0)[load_sample_fov(s)].mean() for s in samples]
    assert scores["ld-shape threshold"]["dice"] == pytest.approx(np.mean([2 * f / (1 + f) for f in fractions]))  # everything inside the FOV
    assert scores["ld-shape argmax"]["dice"] == scores["ld-shape prototype"]["dice"] == 0.0
    assert scores["ld-shape argmax"]["auc"] == scores["ld-shape threshold"]["auc"] == 0.5  # a constant a_0 ranks nothing
    assert all(0 <= scores[b]["dice"] <= 1 for b in ("otsu", "frangi"))
    assert list(score_vessel_rules(_model(ConstantRules()), samples, baselines=False)) == ["ld-shape threshold", "ld-shape argmax", "ld-shape prototype"]


def _chest(tmp_path, i):
    """A 40x40 'chest X-ray': dark left and right lungs (classes 1, 2) on a bright body, a heart (3) between."""
    img, mask = np.full((40, 40), 200, np.uint8), np.zeros((40, 40), np.uint8)
    img[8:32, 4 + i : 16 + i], mask[8:32, 4 + i : 16 + i] = 40, 1
    img[8:32, 24:36], mask[8:32, 24:36] = 40, 2
    mask[20:30, 17:23] = 3
    Image.fromarray(img).save(tmp_path / f"{i}.png")
    Image.fromarray(mask).save(tmp_path / f"{i}_mask.png")
    return Sample(str(i), str(tmp_path / f"{i}.png"), str(tmp_path / f"{i}_mask.png"), split="test",
                  extra={"class_names": ["background", "Left Lung", "Right Lung", "Cardiomediastinum"]})


def test_lungs_are_the_union_and_the_oracle_row_names_the_best_control_cluster(tmp_path):
    samples = [_chest(tmp_path, i) for i in range(3)]
    union = lung_union(samples[0], (20, 20))
    assert union.shape == (20, 20) and union[10, 4] and union[10, 15] and not union[14, 10] and not union[0, 0]
    out = score_lungs(_model(DarkIsStructure(), (40, 40), 1), _model(DarkIsStructure(), (40, 40), 1), samples, (40, 40), pictures=2)
    dice = {k: np.mean(v) for k, v in out["dice"].items()}
    assert dice["ld-shape, argmax"] == pytest.approx(1.0, abs=0.01) and dice["otsu"] == pytest.approx(1.0, abs=0.01)
    assert dice["control, cluster 0"] < 0.01 and dice["control, best cluster (1) chosen with the labels"] == pytest.approx(1.0, abs=0.01)
    f = np.array([lung_union(s, (40, 40)).mean() for s in samples])
    assert dice["everything"] == pytest.approx(np.mean(2 * f / (1 + f)))
    assert out["control_k"].shape == (3, 3) and len(out["panels"]) == 2
    heartless = Sample("x", samples[0].image, samples[0].mask, extra={"class_names": ["background", "a", "b"]})
    with pytest.raises(SystemExit, match="no Left Lung / Right Lung"):
        lung_union(heartless, (20, 20))


def test_the_retina_photograph_and_its_panels_stay_inside_its_disc():
    image, fov = retina_photograph(64)
    assert image.shape == (3, 64, 64) and 0 <= image.min() and image.max() <= 1
    assert 0.5 < fov.mean() < 0.75 and not fov[6, 6] and not fov[32, 2] and fov[32, 32]  # the disc, not the dark corners
    retina, fov2, panels = retina_panels(_model(ConstantRules(), (32, 32), 3), "threshold", 64)
    assert list(panels) == ["ld-shape", "otsu", "frangi"] and (fov2 == fov).all()
    assert (panels["ld-shape"] == fov).all() and all(not p[~fov].any() for p in panels.values())
