"""benchmarks/pretrain_runs.py: each run against its own reference cells, pooled over runs with
the pretraining run as a third resampled factor."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest

from localdisc.evaluation.stats import cluster_bootstrap


def _write(folder: Path, gain: float, reference_shift: float, rng) -> np.ndarray:
    """per_image.csv of random and ld at budget 2 (5 images, 3 seeds); returns ld - random (images, seeds)."""
    folder.mkdir()
    rows, d = [], np.zeros((5, 3))
    for i in range(5):
        for s in range(3):
            ref = 0.5 + reference_shift + 0.01 * i
            ld = ref + gain + rng.normal(0, 0.02)
            d[i, s] = ld - ref
            rows += [{"method": "random", "budget": "2", "seed": s, "id": f"img{i}", "dice_mean": ref},
                     {"method": "ld", "budget": "2", "seed": s, "id": f"img{i}", "dice_mean": ld}]
    if reference_shift == 0:  # a budget only the first folder has
        rows += [{"method": "random", "budget": "5", "seed": 0, "id": "img0", "dice_mean": 0.7},
                 {"method": "ld", "budget": "5", "seed": 0, "id": "img0", "dice_mean": 0.75}]
    rows.append({"method": "random", "budget": "10", "seed": 0, "id": "img0", "dice_mean": 0.7})  # no ld cell: budget left out
    with open(folder / "per_image.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows[::-1])  # row order must not matter
    return d


def test_runs_are_compared_with_their_own_reference_and_pooled(tmp_path, benchmark_script):
    rng = np.random.default_rng(0)
    d1 = _write(tmp_path / "a", 0.02, 0.0, rng)
    d2 = _write(tmp_path / "b", 0.10, 0.05, rng)  # another random-init result in that folder
    assert benchmark_script("pretrain_runs").main(["--runs", f"a={tmp_path / 'a'}", f"b={tmp_path / 'b'}", "--out", str(tmp_path), "--name", "t"]) == 0
    result = json.loads((tmp_path / "t.json").read_text())
    assert list(result["budgets"]) == ["2", "5"]
    assert result["budgets"]["5"]["n_runs"] == 1 and list(result["budgets"]["5"]["runs"]) == ["a"]  # only a has ld at 5
    cell = result["budgets"]["2"]
    assert cell["runs"]["a"]["mean_diff"] == pytest.approx(d1.mean()) and cell["runs"]["b"]["mean_diff"] == pytest.approx(d2.mean())
    assert (cell["runs"]["a"]["ci_low"], cell["runs"]["a"]["ci_high"]) == pytest.approx(cluster_bootstrap(d1)[:2])
    assert cell["pooled"]["mean_diff"] == pytest.approx((d1.mean() + d2.mean()) / 2)
    lo, hi, p = cluster_bootstrap(np.stack([d1, d2], axis=2))
    assert (cell["pooled"]["ci_low"], cell["pooled"]["ci_high"], cell["pooled"]["p_value"]) == pytest.approx((lo, hi, p))
    assert result["budgets"]["5"]["pooled"]["mean_diff"] == pytest.approx(0.05)
    assert "| 2 |" in (tmp_path / "t.md").read_text() and "not run" in (tmp_path / "t.md").read_text()
