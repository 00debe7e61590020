"""Step timing (tasks/step_timing.py): what is timed, how modes differ, budgets, throughput rows."""

from __future__ import annotations

import sys

import torch

from localdisc.tasks import step_timing
from localdisc.tasks.step_timing import MODES, build_mode, pdcr_overhead, pretrain_throughput, seconds_per_step, steps_in_budget, throughput_configs, timed_step
from localdisc.train.finetune import FinetuneConfig


def test_modes_share_their_common_weights_and_add_pdcr_then_uafs():
    models = {m: build_mode(m, 2, 1, 2, torch.device("cpu"))[0] for m in MODES}
    plain, pdcr, uafs = (models[m].state_dict() for m in MODES)
    assert all(torch.equal(v, pdcr[k]) for k, v in plain.items())  # same seed, same U-Net
    assert models["plain"].pdcr is None and models["pdcr"].pdcr is not None and models["pdcr"].pdcr_weight == 0.05
    assert set(pdcr) < set(uafs) and all(".decoder_gates." in k for k in set(uafs) - set(pdcr))  # UAFS: gates after decoder stages


def test_a_timed_step_trains():
    model, opt = build_mode("plain", 2, 1, 2, torch.device("cpu"))
    x, y = torch.rand(1, 1, 32, 32), torch.randint(0, 2, (1, 32, 32))
    before = [p.detach().clone() for p in model.parameters()]
    assert timed_step(model, opt, x, y) > 0
    assert any(not torch.equal(a, p) for a, p in zip(before, model.parameters()))


def test_overhead_rows_give_medians_and_ratios_to_plain(monkeypatch):
    ticks = {"plain": 1.0, "pdcr": 1.5, "pdcr+uafs": 2.0}
    modes = iter(MODES * 3)
    monkeypatch.setattr(step_timing, "timed_step", lambda model, opt, x, y, dtype=None: ticks[next(modes)])
    row = pdcr_overhead([1, 1, 32, 32], 2, reps=2, warmup=1, device=torch.device("cpu"))
    assert row["shape"] == [1, 1, 32, 32] and row["times_s"]["pdcr"] == [1.5, 1.5]  # the warm-up round is not timed
    assert row["ratio_to_plain"] == {"plain": 1.0, "pdcr": 1.5, "pdcr+uafs": 2.0}


def test_a_budget_of_minutes_becomes_steps():
    assert steps_in_budget(10, 1.0) == 510 and steps_in_budget(1, 10.0) == 50  # 85% of the time; never fewer than 50
    cfg = FinetuneConfig(image_size=(32, 32), batch_size=1, encoder_channels=(4, 8), decoder_channels=(4,))
    assert 0 < seconds_per_step(cfg, 1, 2, "cpu", reps=1) < 10


def test_throughput_configures_processes_then_precisions_then_workers():
    assert throughput_configs(["ld"], [1, 2], ["32", "bf16"], [0, 2]) == [("ld", 1, "32", 0), ("ld", 2, "32", 0), ("ld", 1, "bf16", 0), ("ld", 1, "32", 2)]


def test_a_throughput_row_reads_the_runs_metrics_or_says_why_it_failed(tmp_path, monkeypatch):
    def fake_run(cmd, **kw):
        out = tmp_path / "run"
        out.mkdir(exist_ok=True)
        (out / "metrics.csv").write_text("step,loss,images_per_s\n1,2.0,10.0\n2,1.5,12.345\n")
        assert cmd[:3] == [sys.executable, "-m", "localdisc.cli.main"] and kw["env"]["OMP_NUM_THREADS"] == "3"
        return type("R", (), {"returncode": 0, "stdout": "", "stderr": ""})()

    monkeypatch.setattr(step_timing.subprocess, "run", fake_run)
    row = pretrain_throughput("ld", 1, "32", 0, ["--steps", "2"], tmp_path / "run", threads=3)
    assert row["images_per_s"] == 12.35 and row["final_loss"] == 1.5 and row["command"].startswith("localdisc pretrain --method ld --steps 2")
    assert str(tmp_path) not in row["command"]  # the temporary run folder is not part of the command shown
    monkeypatch.setattr(step_timing.subprocess, "run", lambda cmd, **kw: type("R", (), {"returncode": 2, "stdout": "", "stderr": "x\nboom"})())
    assert pretrain_throughput("ld", 2, "32", 0, [], tmp_path / "bad")["error"] == "boom"
