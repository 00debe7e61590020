"""What a run tells its user: train.log, progress lines off a terminal, metrics.csv appended,
optional TensorBoard scalars."""

from __future__ import annotations

import csv

import pytest

from localdisc.cli.main import main
from localdisc.runtime.progress import TrainingLog
from localdisc.runtime.run import Run

TINY = ["--encoder-channels", "4", "8", "8", "--decoder-channels", "8", "8", "--picture-every", "0", "--image-size", "32", "32", "--batch-size", "2"]


@pytest.fixture(autouse=True)
def _cache(tmp_path_factory, monkeypatch):
    monkeypatch.setenv("LOCALDISC_CACHE", str(tmp_path_factory.getbasetemp() / "cache"))


def test_pretrain_writes_train_log_and_prints_progress_off_a_terminal(tmp_path, capsys):
    out = tmp_path / "run"
    assert main(["pretrain", "--method", "ld", "--data", "synthetic-fundus:4:32x32", "--out", str(out), "--steps", "4", "--stage1-steps", "2",
                 "--grid", "4", "--log-every", "1", *TINY]) == 0
    printed = capsys.readouterr().out
    # the first lines say what runs where; the stages are named; progress has loss terms, lr, speed, ETA
    assert "3 unlabeled images" in printed and "thread" in printed and "parameters" in printed
    assert "[ld stage 1/2] step 1/2" in printed and "[ld stage 2/2] step 1/2" in printed
    line = next(x for x in printed.splitlines() if x.startswith("[ld stage 2/2] step 2/2"))
    assert "loss " in line and "loss_ld " in line and "| lr 1.0e-03 |" in line and "img/s" in line and "ETA" in line
    for folder, stage in ((out / "stage1", "ld stage 1/2"), (out, "ld stage 2/2")):
        log = (folder / "train.log").read_text()
        assert f"[{stage}] step 1/2" in log and f"[{stage}] step 2/2" in log and "finished 2 steps" in log
        assert log.splitlines()[0][:4].isdigit()  # time-stamped


def test_finetune_writes_train_log(tmp_path, capsys):
    out = tmp_path / "ft"
    assert main(["finetune", "--data", "synthetic-fundus:6:32x32", "--out", str(out), "--steps", "3", "--labels", "3", "--log-every", "1", *TINY[:7], *TINY[9:]]) == 0
    log = (out / "train.log").read_text()
    assert "3 labeled training images" in log and "random init" in log
    assert "[finetune] step 3/3" in log and "best validation Dice" in log
    assert "[finetune] step 1/3" in capsys.readouterr().out


def test_progress_lines_are_throttled_off_a_terminal(tmp_path, capsys):
    log = TrainingLog(tmp_path, "x", total=100, min_interval=3600, tty=False)
    for step in range(1, 101):
        log.step(step, 2, loss=1.0 / step, lr=1e-3)
    printed = [x for x in capsys.readouterr().out.splitlines() if x.startswith("[x]")]
    assert [p.split()[2] for p in printed] == ["1/100", "100/100"]  # first and last only within the interval
    assert len((tmp_path / "train.log").read_text().splitlines()) == 100  # the file has every logged step


def test_metrics_csv_is_appended_not_rewritten(tmp_path):
    run = Run(tmp_path / "r")
    run.begin()
    run.log(1, loss=1.0)
    path = tmp_path / "r" / "metrics.csv"
    inode = path.stat().st_ino
    run.log(2, loss=0.5)
    run.log(3, loss=0.25)
    assert path.stat().st_ino == inode  # the same file grew: no atomic rewrite per step
    assert path.read_text().splitlines() == ["step,loss", "1,1", "2,0.5", "3,0.25"]
    run.log(4, loss=0.1, val_dice=0.7)  # a new column: rewritten once with the wider header
    rows = list(csv.DictReader(path.open()))
    assert list(rows[0]) == ["step", "loss", "val_dice"] and rows[-1]["val_dice"] == "0.7" and rows[0]["val_dice"] == ""
    run.log(5, loss=0.05)
    assert path.read_text().splitlines()[-1] == "5,0.05,"
    run.finish()


def test_resume_drops_a_row_cut_short_by_a_kill_and_later_steps(tmp_path):
    run = Run(tmp_path / "r")
    run.begin()
    for step in (1, 2, 3):
        run.log(step, loss=float(step))
    run.finish()
    path = tmp_path / "r" / "metrics.csv"
    with path.open("a") as f:
        f.write("4,")  # killed mid-line (the step's other fields never arrived)
    resumed = Run(tmp_path / "r", resume=True)
    assert [r["step"] for r in resumed.rows()] == ["1", "2", "3"]
    resumed.truncate_metrics(2)  # the checkpoint was at step 2
    resumed.log(3, loss=9.0)
    assert path.read_text().splitlines() == ["step,loss", "1,1", "2,2", "3,9"]
    resumed.finish()


def test_tensorboard_scalars(tmp_path):
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    out = tmp_path / "ft"
    assert main(["finetune", "--data", "synthetic-fundus:6:32x32", "--out", str(out), "--steps", "2", "--labels", "3", "--log-every", "1",
                 "--tensorboard", *TINY[:7], *TINY[9:]]) == 0
    acc = EventAccumulator(str(out / "tensorboard"))
    acc.Reload()
    assert {"loss", "lr"} <= set(acc.Tags()["scalars"])
    assert [e.step for e in acc.Scalars("loss")] == [1, 2]


def test_first_progress_line_comes_at_step_one_even_between_logged_steps(tmp_path, capsys, monkeypatch):
    """A slow machine with --log-every 50 still hears from the run at step 1 and at most every
    min_interval seconds after, not only at step 50."""
    now = [0.0]
    monkeypatch.setattr("localdisc.runtime.progress.time.time", lambda: now[0])
    log = TrainingLog(tmp_path, "stage", 100, min_interval=30.0, tty=False)
    for step in range(1, 8):  # a step every 10 s, no logged values: heartbeats only
        log.step(step, 4)
        now[0] += 10.0
    lines = [x.split(" (")[0] for x in capsys.readouterr().out.splitlines() if x.startswith("[stage]")]
    assert lines == ["[stage] step 1/100", "[stage] step 4/100", "[stage] step 7/100"], lines
