"""Reports that cannot mislead: CI and p from one bootstrap (they never disagree), a verdict in
the first lines, a warning when a comparison rests on one seed."""

import numpy as np

from localdisc.evaluation.stats import cluster_bootstrap, compare_to_reference, verdict
from localdisc.report.benchmark_report import verdict_lines


def test_ci_and_p_never_disagree():
    rng = np.random.default_rng(1)
    for i in range(200):
        d = rng.normal(rng.normal(0, 0.05), 0.2, (int(rng.integers(3, 40)), int(rng.integers(1, 4))))
        lo, hi, p = cluster_bootstrap(d, samples=400, seed=i)
        assert (p < 0.05) == (lo > 0 or hi < 0), (lo, hi, p)


def _per_image(shift, seeds):
    rng = np.random.default_rng(0)
    rows = []
    for seed in seeds:
        for i in range(30):
            base = rng.uniform(0.5, 0.8)
            rows.append({"method": "random", "budget": "2", "id": f"i{i}", "seed": seed, "dice_mean": base})
            rows.append({"method": "ld", "budget": "2", "id": f"i{i}", "seed": seed, "dice_mean": base + shift + rng.normal(0, 0.02)})
    return rows


def test_verdict_first_and_one_seed_warning():
    comps = compare_to_reference(_per_image(0.05, [0]), ["dice_mean"])
    (c,) = comps
    assert c["verdict"] == "helps" and c["ci_low"] > 0 and c["p_value"] < 0.05
    lines = verdict_lines(comps, ["random", "ld"], ["2"], [0], shared_pretraining=True)
    assert lines[0].startswith("**Verdict**") and lines[1].startswith("**ld** vs random init") and "helps at 2 labels" in lines[1]
    assert any("one seed" in x for x in lines) and any("one pretraining run" in x for x in lines)
    three = verdict_lines(compare_to_reference(_per_image(-0.05, [0, 1, 2]), ["dice_mean"]), ["random", "ld"], ["2"], [0, 1, 2], False)
    assert "hurts at 2 labels" in three[1] and not any("one seed" in x for x in three)
    assert verdict(-0.01, 0.02) == "cannot tell"


def test_verdict_says_1_label():
    rows = [dict(r, budget="1") for r in _per_image(0.05, [0])]
    line = verdict_lines(compare_to_reference(rows, ["dice_mean"]), ["random", "ld"], ["1"], [0], shared_pretraining=True)[1]
    assert "helps at 1 label (" in line
