"""`localdisc benchmark` end to end on a tiny synthetic benchmark: outputs, caching, resume."""

from __future__ import annotations

import csv
import json
import os
from pathlib import Path

import pytest
import yaml

from localdisc.cli.main import main

CONFIG = Path(__file__).resolve().parents[2] / "configs" / "synthetic.yaml"
OUTPUTS = ("results.csv", "per_image.csv", "comparisons.csv", "results.md", "dice_vs_labels.png", "report.html", "benchmark.yaml")


@pytest.fixture(scope="module")
def bench(tmp_path_factory):
    """One tiny benchmark (random + ld, budgets 2/all, 1 seed), shared by the tests below."""
    root = tmp_path_factory.mktemp("bench")
    old = os.environ.get("LOCALDISC_CACHE")
    os.environ["LOCALDISC_CACHE"] = str(root / "cache")
    try:
        out = root / "out"
        assert main(["benchmark", str(CONFIG), "--out", str(out)]) == 0
        yield out
    finally:
        if old is None:
            os.environ.pop("LOCALDISC_CACHE", None)
        else:
            os.environ["LOCALDISC_CACHE"] = old


def _rows(path: Path) -> list[dict]:
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def test_every_output_is_written(bench):
    for name in OUTPUTS:
        assert (bench / name).is_file() and (bench / name).stat().st_size > 0, name
    rows = _rows(bench / "results.csv")
    assert {(r["method"], r["budget"], r["seed"], r["class"]) for r in rows} == {
        (m, b, "0", "vessel") for m in ("random", "ld", "ld-guarded") for b in ("2", "all")}  # ld-guarded: derived from the two
    assert {"dice", "iou", "hd95", "auc", "acc"} <= set(rows[0])  # synthetic fundus is a vessel task
    labels = {r["budget"]: int(r["n_labels"]) for r in rows}
    assert labels["2"] == 2 and labels["all"] > 2
    per_image = _rows(bench / "per_image.csv")
    n_test = int(rows[0]["n_test"])
    assert len(per_image) == 6 * n_test
    comps = _rows(bench / "comparisons.csv")
    assert {(c["method"], c["budget"], c["metric"]) for c in comps} >= {("ld", "2", "dice_vessel"), ("ld", "all", "dice_vessel")}
    assert all(int(c["n_images"]) == n_test for c in comps if c["metric"] == "dice_vessel")
    assert {("ld", b, "dice_mean") for b in ("2", "all")} <= {(c["method"], c["budget"], c["metric"]) for c in comps}
    md = (bench / "results.md").read_text()
    assert "| random |" in md and "| ld |" in md and "Paired Dice difference" in md
    assert "HD95 (vessel), pixels" in md  # the unit of the evaluation (mm where images have a spacing)
    assert not list(bench.glob("**/ckpt-*")), "finished runs keep only their final/best weights"
    assert len(list(bench.glob("finetune/*/*/best.safetensors"))) == 4
    html = (bench / "report.html").read_text()
    # the plot, the same test images across methods, and each method's worst/median/best image
    assert html.count("data:image/png;base64,") >= 1 and html.count("data:image/jpeg;base64,") >= 1 + 2 * 2
    assert "The same test images across methods" in html and "worst, median and best" in html
    assert (bench / "same_images.png").is_file()
    for m in ("random", "ld"):
        cases = json.loads((bench / "finetune" / m / "b2-s0" / "eval-test" / "overlays" / "cases.json").read_text())
        assert cases[0]["case"] == "worst" and "best" in {c["case"] for c in cases}
    intro = html[html.index("<h1>") : html.index("<h2>")]
    assert "<code>" in intro and "{'" not in intro and "{&#x27;" not in intro  # settings as text, not Python reprs
    assert "src='/" not in html


def test_comparisons_are_reproduced_from_per_image_csv(bench):
    """Recompute every Dice row of comparisons.csv from per_image.csv by hand: the mean of the
    matched (image, seed) differences and the exact sign-flip / Wilcoxon p on per-image means."""
    import itertools

    import numpy as np
    from scipy.stats import wilcoxon

    per_image = _rows(bench / "per_image.csv")
    for c in (c for c in _rows(bench / "comparisons.csv") if c["metric"].startswith("dice")):
        ref = {(r["id"], r["seed"]): float(r[c["metric"]]) for r in per_image if r["method"] == "random" and r["budget"] == c["budget"]}
        diffs: dict[str, list[float]] = {}
        for r in per_image:
            if r["method"] == c["method"] and r["budget"] == c["budget"]:
                diffs.setdefault(r["id"], []).append(float(r[c["metric"]]) - ref[(r["id"], r["seed"])])
        pooled = [d for v in diffs.values() for d in v]
        assert float(c["mean_diff"]) == pytest.approx(sum(pooled) / len(pooled), abs=1e-5)
        per_img = [sum(v) / len(v) for v in diffs.values()]
        nonzero = [d for d in per_img if d != 0]
        if len(nonzero) >= 6:
            p = wilcoxon(per_img).pvalue
        elif nonzero:
            obs = abs(np.mean(per_img))
            p = np.mean([abs(np.dot(s, per_img)) / len(per_img) >= obs - 1e-12 for s in itertools.product((1, -1), repeat=len(per_img))])
        else:
            p = 1.0
        assert float(c["p_value"]) == pytest.approx(p, rel=1e-3)
        assert float(c["ci_low"]) <= float(c["mean_diff"]) <= float(c["ci_high"])


def test_pretraining_used_train_images_only_and_was_transferred(bench):
    pre = bench / "pretrain"
    (run,) = [p for p in pre.iterdir() if p.is_dir()]
    cfg = yaml.safe_load((run / "config.yaml").read_text())
    assert cfg["split"] == "train" and cfg["method"] == "ld"
    transfer = json.loads((bench / "finetune" / "ld" / "b2-s0" / "transfer.json").read_text())
    assert Path(transfer["init"]) == run and transfer["transferred"]
    # same split for both methods: identical train/val/test ids
    splits = [json.loads((bench / "finetune" / m / "b2-s0" / "splits.json").read_text()) for m in ("random", "ld")]
    assert splits[0] == splits[1]
    assert not set(splits[0]["test"]) & set(splits[0]["train"] + splits[0]["val"])


def test_second_call_reuses_everything(bench, monkeypatch, capsys):
    import localdisc.tasks.evaluate as ev
    import localdisc.train.finetune as ft
    import localdisc.train.pretrain as pt

    def forbidden(*a, **k):
        raise AssertionError("a finished cell was recomputed")

    monkeypatch.setattr(ft, "finetune", forbidden)
    monkeypatch.setattr(pt, "pretrain", forbidden)
    monkeypatch.setattr(ev, "evaluate", forbidden)
    summaries = sorted(bench.glob("finetune/*/*/summary.json"))
    assert len(summaries) == 4
    before = {p: p.stat().st_mtime_ns for p in summaries + sorted(bench.glob("**/model.safetensors"))}
    assert main(["benchmark", str(CONFIG), "--out", str(bench)]) == 0
    assert "trained: 0, cells fine-tuned: 0, evaluated: 0, reused: 4" in capsys.readouterr().out
    assert {p: p.stat().st_mtime_ns for p in before} == before
    assert main(["benchmark", str(CONFIG), "--out", str(bench), "--dry-run"]) == 0
    assert "(0 to do)" in capsys.readouterr().out
    # another pretraining run (into another --out): its pretraining folder carries the seed
    assert main(["benchmark", str(CONFIG), "--out", str(bench.parent / "seed7"), "--dry-run", "--pretrain-seed", "7"]) == 0
    plan = capsys.readouterr().out
    assert "seed 7: todo" in plan and "-s7" in plan and "seed 0" not in plan.split("finetune")[0]
    # only some label budgets: the plan keeps those cells; a budget the profile lacks is one clear error
    assert main(["benchmark", str(CONFIG), "--out", str(bench), "--dry-run", "--budgets", "all"]) == 0
    plan = capsys.readouterr().out
    assert "budgets ['all']" in plan and "b2-" not in plan and "ball-s0" in plan
    assert main(["benchmark", str(CONFIG), "--out", str(bench), "--dry-run", "--budgets", "5"]) == 2
    assert "--budgets ['5'] not in the profile (budgets: 2, all)" in capsys.readouterr().err
    assert main(["benchmark", str(CONFIG), "--out", str(bench), "--dry-run", "--pretrain-seed", "-1"]) == 2
    assert "--pretrain-seed must be an integer from 0 to 2147483647, got -1" in capsys.readouterr().err


def test_unfinished_cell_is_completed_without_retraining(bench, monkeypatch, capsys):
    import localdisc.train.finetune as ft

    monkeypatch.setattr(ft, "finetune", lambda *a, **k: (_ for _ in ()).throw(AssertionError("retrained")))
    (bench / "finetune" / "ld" / "ball-s0" / "summary.json").unlink()  # as if killed during evaluation
    assert main(["benchmark", str(CONFIG), "--out", str(bench)]) == 0
    assert "cells fine-tuned: 0, evaluated: 1, reused: 4" in capsys.readouterr().out
    assert (bench / "finetune" / "ld" / "ball-s0" / "summary.json").is_file()


def test_changed_settings_do_not_silently_reuse_cells(bench, tmp_path, capsys):
    cfg = yaml.safe_load(CONFIG.read_text())
    cfg["finetune"]["steps"] = 7
    path = tmp_path / "changed.yaml"
    path.write_text(yaml.safe_dump(cfg))
    assert main(["benchmark", str(path), "--out", str(bench)]) == 2
    assert "other settings (steps)" in capsys.readouterr().err


def test_interrupted_benchmark_resumes(tmp_path, monkeypatch):
    monkeypatch.setenv("LOCALDISC_CACHE", str(tmp_path / "cache"))
    cfg = yaml.safe_load(CONFIG.read_text())
    cfg.update(methods=["random"], budgets=[2])
    cfg["finetune"].update(steps=4, checkpoint_every=2)
    path = tmp_path / "b.yaml"
    path.write_text(yaml.safe_dump(cfg))
    monkeypatch.setenv("LOCALDISC_STOP_AFTER_STEP", "2")  # finetune's test hook: a kill after step 2
    assert main(["benchmark", str(path), "--out", str(tmp_path / "out")]) == 130
    cell = tmp_path / "out" / "finetune" / "random" / "b2-s0"
    assert (cell / "ckpt-00000002").is_dir() and not (cell / "summary.json").exists()
    monkeypatch.delenv("LOCALDISC_STOP_AFTER_STEP")
    assert main(["benchmark", str(path), "--out", str(tmp_path / "out")]) == 0
    steps = [int(r["step"]) for r in _rows(cell / "metrics.csv")]
    assert steps == sorted(set(steps)) and steps[-1] == 4
    assert (cell / "summary.json").is_file() and (tmp_path / "out" / "report.html").is_file()


def test_errors_are_one_line(tmp_path, capsys):
    bad = tmp_path / "bad.yaml"
    bad.write_text("data: synthetic-fundus:8\nimage_size: [32, 32]\nmethods: [nosuchmethod]\n")
    assert main(["benchmark", str(bad), "--out", str(tmp_path / "o")]) == 2
    assert "nosuchmethod" in capsys.readouterr().err
    assert main(["benchmark", str(tmp_path / "missing.yaml")]) == 2


def test_report_rebuilds_keep_the_run_that_computed_the_cells(bench, capsys):
    before = json.loads((bench / "provenance.json").read_text())
    for _ in range(2):  # a rebuild of a rebuild must not name the first rebuild as the cells' source
        assert main(["benchmark", str(CONFIG), "--out", str(bench), "--report-only"]) == 0
    after = json.loads((bench / "provenance.json").read_text())
    assert "report rebuilt" in after["command"] and "--report-only" not in after["command"]
    assert after["cells_computed_by"]["command"] == before["command"] and "report rebuilt" not in before["command"]
    assert after["invocations"] == before["invocations"] and after["wall_seconds"] == before["wall_seconds"]
