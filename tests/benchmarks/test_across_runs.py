"""benchmarks/across_runs.py: methods of two benchmark folders paired through their shared
random-init cells, and folders whose random-init cells differ refused."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest

from localdisc.evaluation.stats import cluster_bootstrap


def _write(folder: Path, scores: dict[str, np.ndarray]) -> None:
    """per_image.csv with one (images, seeds) array of dice_mean per method, budget 2."""
    folder.mkdir()
    rows = [{"method": m, "budget": "2", "seed": s, "id": f"img{i}", "dice_mean": f"{v[i, s]:.6f}"}
            for m, v in scores.items() for i in range(v.shape[0]) for s in range(v.shape[1])]
    with open(folder / "per_image.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)


def test_methods_of_two_folders_are_paired_through_random_init(tmp_path, benchmark_script):
    rng = np.random.default_rng(0)
    random = np.round(rng.uniform(0.4, 0.8, (6, 3)), 6)
    ld, densecl = np.round(random + rng.normal(0.05, 0.02, (6, 3)), 6), np.round(random + rng.normal(0.01, 0.02, (6, 3)), 6)
    _write(tmp_path / "a", {"random": random, "ld": ld})
    _write(tmp_path / "b", {"random": random, "densecl": densecl})
    script = benchmark_script("across_runs")
    assert script.main(["--runs", str(tmp_path / "a"), str(tmp_path / "b"), "--out", str(tmp_path), "--name", "t"]) == 0
    result = json.loads((tmp_path / "t.json").read_text())
    vs_ld = {c["method"]: c for c in result["minus_reference"]}
    assert set(vs_ld) == {"random", "densecl"}
    assert vs_ld["densecl"]["mean_diff"] == pytest.approx((densecl - ld).mean())
    assert (vs_ld["densecl"]["ci_low"], vs_ld["densecl"]["ci_high"]) == pytest.approx(cluster_bootstrap(densecl - ld)[:2])
    vs_random = {c["method"]: c for c in result["minus_random"]}
    assert vs_random["ld"]["mean_diff"] == pytest.approx((ld - random).mean())

    other = random.copy()
    other[2, 1] += 0.01  # one cell of another environment
    _write(tmp_path / "c", {"random": other, "densecl": densecl})
    assert script.main(["--runs", str(tmp_path / "a"), str(tmp_path / "c"), "--out", str(tmp_path), "--name", "u"]) == 2
    assert not (tmp_path / "u.json").exists()


def test_a_folder_gives_only_the_methods_named_after_it(tmp_path, benchmark_script):
    rng = np.random.default_rng(3)
    random = np.round(rng.uniform(0.4, 0.8, (5, 3)), 6)
    ld, other_ld = np.round(random + 0.05, 6), np.round(random + 0.02, 6)
    densecl = np.round(random + rng.normal(0.0, 0.02, (5, 3)), 6)
    _write(tmp_path / "a", {"random": random, "ld": ld})
    _write(tmp_path / "b", {"random": random, "densecl": densecl, "ld": other_ld})
    script = benchmark_script("across_runs")
    assert script.main(["--runs", str(tmp_path / "a"), str(tmp_path / "b"), "--out", str(tmp_path), "--name", "t"]) == 2  # two LDs
    assert script.main(["--runs", str(tmp_path / "a"), f"{tmp_path / 'b'}:densecl", "--out", str(tmp_path), "--name", "t"]) == 0
    vs_ld = {c["method"]: c for c in json.loads((tmp_path / "t.json").read_text())["minus_reference"]}
    assert vs_ld["densecl"]["mean_diff"] == pytest.approx((densecl - ld).mean())
