"""What the benchmark scripts share (tasks/bench_runs.py): options, configs, train-once, scores."""

from __future__ import annotations

import argparse
import os

import pytest

from localdisc.tasks import bench_runs
from localdisc.tasks.bench_runs import (
    QUICK,
    add_pretrain_args,
    apply_quick,
    class_scores,
    finetune_and_evaluate,
    images_own_size,
    mean_sd_by_class,
    pretrain_config,
    pretrain_once,
    retina_check,
    usable_cpus,
)
from localdisc.train.finetune import FinetuneConfig


def _args(argv=()):
    p = argparse.ArgumentParser()
    add_pretrain_args(p)
    p.add_argument("--device", default="cpu")
    p.add_argument("--work", default="w")
    return p.parse_args(list(argv))


def test_run_size_options_make_a_train_split_config_halved_at_mid_run():
    args = _args(["--pretrain-steps", "40", "--image-size", "32", "48", "--encoder-channels", "4", "8"])
    cfg = pretrain_config(args, "synthetic-fundus:4:32x48", "out", max_images=3)
    assert (cfg.split, cfg.steps, cfg.image_size, cfg.encoder_channels, cfg.max_images) == ("train", 40, (32, 48), (4, 8), 3)
    assert (cfg.lr_halve_every, cfg.log_every, cfg.picture_every, cfg.overwrite) == (20, 2, 0, True)
    assert pretrain_config(args, "d", "o", steps=1, lr=0.0).lr_halve_every == 1  # never 0: that would mean "constant"


def test_quick_sets_the_tiny_network_then_more_and_never_shares_work_folders():
    args = apply_quick(_args(), max_test=4, grid=3)
    assert [args.pretrain_steps, args.image_size, args.encoder_channels, args.decoder_channels] == [QUICK[k] for k in ("pretrain_steps", "image_size", "encoder_channels", "decoder_channels")]
    assert (args.grid, args.max_test, args.work) == (3, 4, "w_quick")


def test_a_finished_run_is_reused_not_retrained(tmp_path, monkeypatch):
    calls = []
    monkeypatch.setattr(bench_runs, "run_pretraining", lambda cfg, mcfg: calls.append(cfg.out) or tmp_path / "new")
    cfg = pretrain_config(_args(), "d", tmp_path / "run")
    assert pretrain_once(cfg, None) == tmp_path / "new" and calls == [str(tmp_path / "run")]
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "model.safetensors").write_bytes(b"")
    assert pretrain_once(cfg, None) == tmp_path / "run" and len(calls) == 1


def test_class_scores_and_their_mean_over_seeds():
    summary = {"class_names": ["background", "lung", "heart"],
               "metrics": {f"{k}_{c}": {"mean": m, "std": 0.1, "n": 5} for (k, c, m) in [("dice", "lung", 0.8), ("dice", "heart", 0.6), ("hd95", "lung", 3.0), ("hd95", "heart", 4.0)]}}
    scores = class_scores(summary, ("dice", "hd95"))
    assert list(scores) == ["lung", "heart"] and scores["heart"]["hd95"] == {"mean": 4.0, "std": 0.1, "n": 5}
    agg = mean_sd_by_class([{"lung": 0.8, "heart": 0.5}, {"lung": 0.6, "heart": 0.5}])
    assert agg["lung"] == pytest.approx({"mean": 0.7, "std": 0.1, "n": 2}) and agg["heart"]["std"] == 0
    assert mean_sd_by_class([{"lung": 0.4}])["lung"] == {"mean": 0.4, "std": 0.0, "n": 1}


def test_usable_cpus_follow_the_affinity_and_images_keep_their_own_size():
    if hasattr(os, "sched_getaffinity"):
        assert usable_cpus() == len(os.sched_getaffinity(0))
    assert images_own_size("synthetic-fundus:4:40x48") == [40, 48]


@pytest.fixture
def _cache(tmp_path_factory, monkeypatch):
    monkeypatch.setenv("LOCALDISC_CACHE", str(tmp_path_factory.getbasetemp() / "cache"))


def test_finetune_then_score_on_the_test_split(tmp_path, monkeypatch):
    calls = []
    monkeypatch.setattr(bench_runs, "finetune", lambda cfg: calls.append(("finetune", cfg.out)) or tmp_path / "ft")
    monkeypatch.setattr(bench_runs, "evaluate", lambda run, **kw: calls.append(("evaluate", run, kw)) or {"split": kw["split"]})
    cfg = FinetuneConfig(data="synthetic-fundus:6:32x32", out=str(tmp_path / "ft"), device="cpu")
    done = finetune_and_evaluate(cfg, overlays=False)
    assert calls == [("finetune", str(tmp_path / "ft")), ("evaluate", tmp_path / "ft", {"split": "test", "device": "cpu", "overlays": False})]
    assert done["run"] == tmp_path / "ft" and done["summary"] == {"split": "test"} and 0 <= done["train_s"] <= done["total_s"]


def test_ld_runs_on_the_real_retina_photograph(tmp_path, _cache):
    r = retina_check(tmp_path, 2, image_size=(32, 32), encoder_channels=(4, 8, 8), decoder_channels=(8, 4), device="cpu", grid=2)
    assert (tmp_path / "retina" / "retina.png").is_file() and r["steps"] == 2
    assert r["metrics_header"].startswith("step") and r["last_row"] != r["metrics_header"]
