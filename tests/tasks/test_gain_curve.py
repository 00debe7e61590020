"""The gain-vs-steps curve (tasks/gain_curve.py): weights become runs, checkpoints become points, rows become gains."""

from __future__ import annotations

import csv
import json
from types import SimpleNamespace

import numpy as np
import pytest
import torch
import yaml

from localdisc.runtime.checkpoint import load_weights, save_weights
from localdisc.tasks import gain_curve
from localdisc.tasks.gain_curve import cell_rows, cells_rows, curve_points, finetune_point, gain_table, pseudo_run


def test_a_full_ld_state_becomes_a_backbone_run(tmp_path):
    save_weights({"backbone.encoder.0.weight": torch.ones(2), "backbone.seg": torch.zeros(1), "embed_head.w": torch.ones(3)}, tmp_path / "full.safetensors")
    (tmp_path / "tpl").mkdir()
    (tmp_path / "tpl" / "backbone.json").write_text(json.dumps({"method": "ld", "unet": {"in_channels": 1}}))
    run = pseudo_run(tmp_path / "full.safetensors", tmp_path / "tpl", tmp_path / "run")
    assert set(load_weights(run / "backbone.safetensors")) == {"encoder.0.weight", "seg"}
    assert json.loads((run / "backbone.json").read_text())["unet"] == {"in_channels": 1}


def test_points_are_stage_1_then_each_stage_2_copy_before_the_end(tmp_path):
    pre = tmp_path / "pre"
    (pre / "stage1").mkdir(parents=True)
    (pre / "stage1" / "config.yaml").write_text(yaml.safe_dump({"steps": 100}))
    (pre / "config.yaml").write_text(yaml.safe_dump({"steps": 300}))
    for step in (200, 100, 300):
        (tmp_path / f"cxr-s2-{step}.safetensors").write_bytes(b"")
    (tmp_path / "ph2-s2-50.safetensors").write_bytes(b"")
    points, total = curve_points(pre, tmp_path, "cxr")
    assert total == 400 and [n for n, _ in points] == [100, 200, 300]  # 100 + 300 is the run's end: the benchmark's own row
    assert points[0][1] == pre / "stage1" / "model.safetensors" and points[2][1].name == "cxr-s2-200.safetensors"
    assert [n for n, _ in curve_points(pre, tmp_path, "cxr", only=[300])[0]] == [300]


def _rows(method, values, seeds=(0, 1)):
    return [{"method": method, "budget": "b", "seed": s, "id": f"img{i}", "dice_mean": v + 0.01 * s} for s in seeds for i, v in enumerate(values)]


def test_cells_are_read_as_rows_and_each_point_is_compared_with_random_init(tmp_path):
    (tmp_path / "eval-test").mkdir()
    with open(tmp_path / "eval-test" / "per_image.csv", "w", newline="") as f:
        w = csv.DictWriter(f, ["id", "dice_mean"])
        w.writeheader()
        w.writerows([{"id": "a", "dice_mean": 0.5}, {"id": "b", "dice_mean": 0.7}])
    assert cell_rows(tmp_path, "ld@5", 2) == [{"method": "ld@5", "budget": "b", "seed": 2, "id": "a", "dice_mean": "0.5"},
                                              {"method": "ld@5", "budget": "b", "seed": 2, "id": "b", "dice_mean": "0.7"}]
    base = np.linspace(0.3, 0.8, 8)
    table = gain_table([(100, _rows("ld@100", base + 0.05)), (400, _rows("ld", base - 0.02))], _rows("random", base))
    assert [t["pretrain_steps"] for t in table] == [100, 400]
    assert table[0]["mean_diff"] == pytest.approx(0.05) and table[0]["ci_low"] == pytest.approx(0.05) and table[0]["n_images"] == 8
    assert table[1]["mean_diff"] == pytest.approx(-0.02) and table[1]["n_seeds"] == 2


def _write_cell(cell, value):
    (cell / "eval-test").mkdir(parents=True, exist_ok=True)
    (cell / "eval-test" / "per_image.csv").write_text(f"id,dice_mean\nimg0,{value}\n")


def test_a_point_is_fine_tuned_per_seed_unless_already_scored(tmp_path, monkeypatch):
    trained = []
    monkeypatch.setattr(gain_curve, "finetune_config", lambda cfg, entry, budget, seed, cell, run: SimpleNamespace(out=cell, seed=seed, budget=budget, init=run, overwrite=False))
    monkeypatch.setattr(gain_curve, "finetune", lambda fcfg: trained.append((fcfg.seed, fcfg.budget, fcfg.init, fcfg.overwrite)))
    monkeypatch.setattr(gain_curve, "evaluate", lambda cell, **kw: _write_cell(cell, 0.4))
    _write_cell(tmp_path / "s0", 0.9)  # seed 0 was scored by an earlier (killed) invocation
    cfg = SimpleNamespace(seeds=[0, 1], budgets=[2, 5], device="cpu")
    rows = finetune_point(cfg, None, tmp_path / "run", tmp_path, "ld@7")
    assert trained == [(1, 2, tmp_path / "run", True)]
    assert [(r["method"], r["seed"], r["dice_mean"]) for r in rows] == [("ld@7", 0, "0.9"), ("ld@7", 1, "0.4")]
    cells = {0: SimpleNamespace(path=tmp_path / "s0"), 1: SimpleNamespace(path=tmp_path / "s1")}
    assert [r["seed"] for r in cells_rows(cells, "ld")] == [0, 1]
