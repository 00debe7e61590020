"""One-shot landmarks against baselines (tasks/landmark_bench.py): truth, supports, errors, comparisons."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from localdisc.data.records import Sample
from localdisc.data.sources import resolve_source
from localdisc.tasks import landmark_bench as lb

DATA = "synthetic-fundus:6:48x48"


def test_cxr_landmarks_come_from_each_structures_full_outline(monkeypatch):
    masks = {"Left Lung": np.pad(np.ones((4, 2), bool), ((2, 4), (1, 3))), "Right Lung": np.pad(np.ones((2, 2), bool), ((5, 3), (4, 0))),
             "Cardiomediastinum": np.pad(np.ones((3, 3), bool), ((3, 4), (2, 1)))}
    monkeypatch.setattr(lb, "resolve_source", lambda data, structures: [Sample("p1", "x.png", structures, split="train")])
    monkeypatch.setattr(lb, "load_sample_mask", lambda s: masks[s.mask].astype(np.int64))
    out = lb.cxr_landmarks("cxr:x")
    marks = out["landmarks"]["p1"]
    assert marks["left_lung_apex"] == [2.0, 1.5] and marks["left_lung_lowest"] == [5.0, 1.5] and marks["left_lung_centroid"] == [3.5, 1.5]
    assert marks["right_lung_centroid"] == [5.5, 4.5] and marks["heart_centroid"] == [4.0, 3.0] and "heart_apex" not in marks
    assert out["sizes"]["p1"] == [10, 6] and out["splits"]["p1"] == "train"


def test_truth_from_a_file_or_the_layouts_own_landmarks(tmp_path):
    own = lb.landmark_truth(DATA)
    assert len(own) == 6 and set(next(iter(own.values()))) == {"optic_disc", "fovea"}
    (tmp_path / "t.json").write_text(json.dumps({"meta": {}, "landmarks": {"a": {"x": [1, 2]}}}))
    assert lb.landmark_truth(DATA, str(tmp_path / "t.json")) == {"a": {"x": [1, 2]}}


def test_supports_are_the_first_training_images_and_every_other_image_is_a_query():
    samples = resolve_source(DATA)
    train = [s for s in samples if s.split == "train"]
    supports, queries = lb.split_supports(samples, None, 2)
    assert [s.id for s in supports] == [s.id for s in train[:2]] and len(queries) == len(samples) - 2
    supports, _ = lb.split_supports(samples, samples[-1].id, 1)
    assert supports[0].id == samples[-1].id
    with pytest.raises(SystemExit, match="support nope not found"):
        lb.split_supports(samples, "nope", 1)


def _content_embed():
    g = torch.Generator().manual_seed(0)
    w = torch.randn(8, 3, 5, 5, generator=g)
    return lambda x: F.conv2d(x.float(), w, padding=2)  # translation-equivariant: describes content


def test_the_support_found_in_itself_has_no_error_and_copy_errors_are_the_moved_positions():
    samples = resolve_source(DATA)
    marks = lb.landmark_truth(DATA)
    supports, queries = [samples[0]], [samples[0], samples[1]]
    e = lb.one_shot_errors(_content_embed(), (48, 48), 3, supports, queries, marks, [1.0], radii=[0.2], affine=True, grid=(24, 24), ncc_half=3, field_mm=96.0)
    assert e["names"] == ["fovea", "optic_disc"] and set(e["grid"]) == {"ld", "ld window 0.2", "ld affine", "ld affine window 0.2", "copy", "ncc"}
    for m in ("ld", "ld window 0.2", "copy", "ncc"):
        assert all(e["grid"][m][n][0] < 0.75 for n in e["names"]), m  # query 0 is the support itself (NCC: whole pixels)
    for n in e["names"]:
        moved = np.hypot(*np.subtract(marks[samples[1].id][n], marks[samples[0].id][n]))
        assert e["grid"]["copy"][n][1] == pytest.approx(moved / 2)  # on the 24 px grid
        assert e["mm"]["copy"][n][1] == pytest.approx(2 * moved)  # 48 px span 96 mm
    assert e["orig"]["copy"][2:] == pytest.approx([np.hypot(*np.subtract(marks[samples[1].id][n], marks[samples[0].id][n])) for n in e["names"]])
    assert len(e["orig"]["ld"]) == 4  # 2 queries x 2 landmarks


def _errors():
    grid = {"ld": [1.0, 2.0, 1.0, 2.0, 1.0, 2.0], "ld window 0.1": [0.5] * 3 + [3.0] * 3, "copy": [3.0, 4.0, 3.0, 4.0, 3.0, 4.0], "ncc": [5.0] * 6}
    return {"names": ["a"], "grid": {m: {"a": v} for m, v in grid.items()}, "orig": {m: v for m, v in grid.items()}, "mm": {m: {"a": v} for m, v in grid.items()}}


def test_methods_are_summarized_and_compared_with_copy_per_query():
    e = _errors()
    s = lb.summarize(e)
    assert s["ld"]["overall"]["mre"] == pytest.approx(1.5) and s["ld"]["per_landmark"]["a"]["n"] == 6 and s["ncc"]["mre_orig_px"] == 5.0
    vs = lb.against_copy(e)
    assert set(vs) == {"ld", "ld window 0.1", "ncc"} and vs["ld"]["mean_diff"] == pytest.approx(-2.0) and vs["ld"]["mean_b"] == pytest.approx(3.5)
    assert vs["ld"]["ci_high"] == pytest.approx(-2.0) and vs["ncc"]["mean_diff"] > 0


def test_the_ld_variant_is_chosen_on_training_queries_and_scored_on_test_queries():
    e = _errors()
    is_test = np.array([False, False, False, True, True, True])
    sel = lb.select_on_train(e, is_test)
    assert sel["method"] == "ld window 0.1"  # best on the training queries (0.5), worse on test (3.0)
    assert sel["test"]["n_images"] == 3 and sel["test"]["mean_a"] == pytest.approx(3.0) and sel["test"]["mean_b"] == pytest.approx(11 / 3)
    assert lb.select_on_train(e, np.zeros(6, bool)) is None
