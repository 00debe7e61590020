"""Shape-guided benchmark runs (tasks/shape_runs.py): names, settings checks, the curve, the lung runs.
Training a real run in segments is tested in tests/benchmarks/test_discover_vessels.py."""

from __future__ import annotations

import argparse
import json

import pytest
import yaml

from localdisc.methods.ld_shape import ShapeLDConfig
from localdisc.tasks import shape_runs
from localdisc.tasks.bench_runs import add_pretrain_args
from localdisc.tasks.shape_runs import (
    add_shape_run_args,
    check_same_settings,
    describe_priors,
    grow_with_curve,
    prior_folder,
    prior_tag,
    stage1_steps,
    train_lung_runs,
    trained_steps,
)


def _args(argv=()):
    p = argparse.ArgumentParser()
    add_pretrain_args(p)
    add_shape_run_args(p)
    args = p.parse_args(list(argv))
    args.prior_size, args.device = [32, 40], "cpu"
    return args


def test_priors_are_named_by_kind_and_size_and_simulated_once(tmp_path):
    args = _args(["--prior-kind", "vessels", "--priors", "3", "--prior-roots", "2"])
    assert prior_tag(args) == "vessels_32x40" and describe_priors(args) == "3 simulated masks, kind vessels, simulated at 32x40, n_roots=2"
    folder = prior_folder(tmp_path / "priors", args)
    assert folder == str(tmp_path / "priors_vessels_32x40") and len(list(tmp_path.glob("priors_vessels_32x40/*.png"))) == 3
    first = {p.name: p.stat().st_mtime_ns for p in tmp_path.glob("priors_vessels_32x40/*.png")}
    prior_folder(tmp_path / "priors", args)
    assert {p.name: p.stat().st_mtime_ns for p in tmp_path.glob("priors_vessels_32x40/*.png")} == first  # not rewritten


def test_stage1_defaults_to_a_fifth_and_an_empty_folder_has_no_steps(tmp_path):
    assert stage1_steps(_args(["--pretrain-steps", "50"])) == 10 and stage1_steps(_args(["--stage1-steps", "7"])) == 7
    assert trained_steps(tmp_path, _args()) == 0


def test_a_run_with_other_settings_is_refused_and_the_same_settings_pass(tmp_path):
    check_same_settings(tmp_path, ShapeLDConfig())  # no run yet: nothing to compare
    saved = {"method_config": {"disc_width": 32, "crop_scale": [0.3, 1.0], "stage": "1"}}
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(saved))
    check_same_settings(tmp_path, ShapeLDConfig(disc_width=32, crop_scale=(0.3, 1.0), stage="2"))  # tuples vs lists, and the stage, do not count
    with pytest.raises(SystemExit, match="disc_width: 32 != 8"):
        check_same_settings(tmp_path, ShapeLDConfig(disc_width=8))


def test_the_curve_scores_each_point_once_and_skips_points_already_passed(tmp_path, monkeypatch):
    trained, scored = [], []
    state = {"steps": 0}

    def fake_train(data, out, args, steps=None):
        state["steps"] = max(state["steps"], steps or args.pretrain_steps)
        trained.append(steps or args.pretrain_steps)
        return out

    monkeypatch.setattr(shape_runs, "train_shape", fake_train)
    monkeypatch.setattr(shape_runs, "trained_steps", lambda out, args: state["steps"])
    run, args = tmp_path / "run", _args(["--pretrain-steps", "40"])
    run.mkdir()
    score = lambda r: scored.append(state["steps"]) or {"ld-shape threshold": {"dice": state["steps"] / 100}}  # noqa: E731
    curve = grow_with_curve("d", run, args, [30, 10, 40], score)
    assert [c["steps"] for c in curve] == [10, 30] and scored == [10, 30] and trained == [10, 30, 40]
    assert [c["steps"] for c in json.loads((run / "curve.json").read_text())] == [10, 30]
    trained.clear()
    curve = grow_with_curve("d", run, args, [10, 20, 30], score)  # 10, 30 known; the run is past 20 without a score
    assert [c["steps"] for c in curve] == [10, 30] and scored == [10, 30] and trained == [40]


def test_lung_runs_share_stage_1_and_differ_only_in_the_prior_weight(tmp_path, monkeypatch):
    made = []
    monkeypatch.setattr(shape_runs, "pretrain_once", lambda cfg, mcfg: made.append((cfg, mcfg)) or cfg.out)
    args = _args(["--pretrain-steps", "6"])
    args.data, args.stage1, args.stage1_steps, args.seed, args.priors, args.adv_weight, args.disc_layers, args.dihedral = "cxr:x", None, 2, 3, 5, 0.5, 5, 1
    runs = train_lung_runs(args, tmp_path)
    assert runs == {"stage1": tmp_path / "stage1", "ld-shape": tmp_path / "ld-shape_adv0.5_d5_dihedral_6steps_s3", "control": tmp_path / "control_d5_dihedral_6steps_s3"}
    (s1, m1), (c1, mshape), (c2, mcontrol) = made
    assert (s1.steps, m1.stage, m1.flip, m1.dihedral) == (2, "1", False, False)
    assert c1.init == c2.init == str(tmp_path / "stage1") and c1.method == c2.method == "ld-shape" and c1.seed == 3
    assert (mshape.adv_weight, mcontrol.adv_weight) == (0.5, 0.0) and mshape.prior_masks == mcontrol.prior_masks == "simulate:lungs:5"
    assert {k: v for k, v in vars(mshape).items() if k != "adv_weight"} == {k: v for k, v in vars(mcontrol).items() if k != "adv_weight"}
