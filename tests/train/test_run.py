"""Run folders: refusing to clobber, --overwrite leaving nothing stale, metrics.csv rows."""

import pytest

from localdisc.errors import ConfigError, TrainingError
from localdisc.train.run import Run


def test_existing_run_needs_resume_or_overwrite(tmp_path):
    run = Run(tmp_path / "r")
    (run.path / "config.yaml").write_text("a: 1\n")
    with pytest.raises(ConfigError, match="--resume"):
        Run(tmp_path / "r")


def test_overwrite_removes_stale_files_but_keeps_nested_runs(tmp_path):
    run = Run(tmp_path / "r")
    (run.path / "config.yaml").write_text("a: 1\n")
    (run.path / "ckpt-00000010").mkdir()
    (run.path / "eval-test" / "overlays").mkdir(parents=True)
    (run.path / "eval-test" / "overlays" / "old.png").write_bytes(b"x")
    (run.path / "stage1").mkdir()
    (run.path / "stage1" / "config.yaml").write_text("b: 2\n")
    Run(tmp_path / "r", overwrite=True)
    assert sorted(p.name for p in run.path.iterdir()) == ["pictures", "stage1"]
    assert (run.path / "stage1" / "config.yaml").is_file()


def test_resume_keeps_files_and_metrics_rows(tmp_path):
    run = Run(tmp_path / "r")
    (run.path / "config.yaml").write_text("a: 1\n")
    for step in (10, 20, 30):
        run.log(step, loss=1.0 / step)
    resumed = Run(tmp_path / "r", resume=True, overwrite=True)
    resumed.truncate_metrics(20)
    resumed.log(30, loss=0.5)
    lines = (run.path / "metrics.csv").read_text().splitlines()
    assert lines[0] == "step,loss" and [line.split(",")[0] for line in lines[1:]] == ["10", "20", "30"]
    assert lines[-1].endswith("0.5")


def test_nan_loss_is_a_clear_error(tmp_path):
    run = Run(tmp_path / "r")
    with pytest.raises(TrainingError, match="loss became nan at step 7"):
        run.log(7, loss=float("nan"))
