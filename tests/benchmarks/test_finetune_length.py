"""benchmarks/finetune_length.py: each method at the length chosen on validation, compared with
random init and with LD at theirs."""

from __future__ import annotations

import json

import numpy as np
import pytest

from localdisc.evaluation.stats import cluster_bootstrap


def _run(scores: dict[str, np.ndarray], val: dict[str, list[float]]):
    """(records, per-image rows) of one length: per method an (images, seeds) array of test
    dice_mean and one validation Dice per seed, budget 2."""
    recs = [{"method": m, "budget": "2", "seed": s, "best_val_dice": v} for m, vs in val.items() for s, v in enumerate(vs)]
    rows = [{"method": m, "budget": "2", "seed": s, "id": f"img{i}", "dice_mean": float(a[i, s])}
            for m, a in scores.items() for i in range(a.shape[0]) for s in range(a.shape[1])]
    return recs, rows


def test_each_method_at_its_chosen_length_minus_random_and_minus_ld(tmp_path, monkeypatch, benchmark_script):
    rng = np.random.default_rng(1)
    short = {m: rng.uniform(0.3, 0.9, (7, 3)) for m in ("random", "ld", "densecl")}
    long = {m: rng.uniform(0.3, 0.9, (7, 3)) for m in ("random", "ld", "densecl")}
    val_short = {"random": [0.5, 0.9, 0.5], "ld": [0.9, 0.9, 0.1], "densecl": [0.1, 0.1, 0.9]}
    val_long = {"random": [0.6, 0.2, 0.6], "ld": [0.1, 0.5, 0.5], "densecl": [0.5, 0.5, 0.5]}
    runs = {"short": _run(short, val_short), "long": _run(long, val_long)}
    script = benchmark_script("finetune_length")
    monkeypatch.setattr(script, "finished_cells", lambda folder: folder)
    monkeypatch.setattr(script, "collect", lambda folder: runs[folder])
    assert script.main(["--runs", "200=short", "400=long", "--out", str(tmp_path), "--name", "t"]) == 0
    result = json.loads((tmp_path / "t.json").read_text())

    def chosen(m):  # by hand: per seed the test column of the length with the higher validation Dice
        return np.stack([(short if val_short[m][s] >= val_long[m][s] else long)[m][:, s] for s in range(3)], axis=1)

    vs_random = {c["method"]: c for c in result["chosen"]["comparisons"]}
    assert vs_random["ld"]["mean_diff"] == pytest.approx((chosen("ld") - chosen("random")).mean())
    vs_ld = {c["method"]: c for c in result["chosen_vs_ld"]}
    assert set(vs_ld) == {"random", "densecl"}
    assert vs_ld["densecl"]["mean_diff"] == pytest.approx((chosen("densecl") - chosen("ld")).mean())
    assert (vs_ld["densecl"]["ci_low"], vs_ld["densecl"]["ci_high"]) == pytest.approx(cluster_bootstrap(chosen("densecl") - chosen("ld"))[:2])
    assert "minus LD" in (tmp_path / "t.md").read_text()
