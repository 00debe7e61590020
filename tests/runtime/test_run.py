"""Run folders: refusing to clobber, --overwrite leaving nothing stale, metrics.csv rows."""

import pytest

from localdisc.errors import ConfigError, TrainingError
from localdisc.runtime.outputs import MARKER
from localdisc.runtime.run import Run


def test_existing_run_needs_resume_or_overwrite(tmp_path):
    run = Run(tmp_path / "r")
    run.begin()
    (run.path / "config.yaml").write_text("a: 1\n")
    with pytest.raises(ConfigError, match="--resume"):
        Run(tmp_path / "r")


def test_overwrite_removes_stale_files_but_keeps_nested_runs(tmp_path):
    run = Run(tmp_path / "r")
    run.begin()
    (run.path / "config.yaml").write_text("a: 1\n")
    (run.path / "ckpt-00000010").mkdir()
    (run.path / "eval-test" / "overlays").mkdir(parents=True)
    (run.path / "eval-test" / "overlays" / "old.png").write_bytes(b"x")
    (run.path / "stage1").mkdir()
    (run.path / "stage1" / "config.yaml").write_text("b: 2\n")
    (run.path / "stage1" / MARKER).write_text("{}")
    new = Run(tmp_path / "r", overwrite=True)
    assert (run.path / "ckpt-00000010").is_dir()  # nothing is touched before the new run begins
    new.begin()
    assert sorted(p.name for p in run.path.iterdir()) == [".localdisc", ".lock", ".replaced", "pictures", "stage1"]
    assert (run.path / ".replaced" / "eval-test" / "overlays" / "old.png").is_file()  # aside until the new run ends
    new.finish()
    assert sorted(p.name for p in run.path.iterdir()) == [".localdisc", ".lock", "pictures", "stage1"]
    assert (run.path / "stage1" / "config.yaml").is_file()


def test_failed_start_leaves_the_old_run_and_no_new_folder(tmp_path):
    old = Run(tmp_path / "r")
    old.begin()
    (old.path / "config.yaml").write_text("a: 1\n")
    (old.path / "model.safetensors").write_bytes(b"weights")
    old.finish()
    Run(tmp_path / "r", overwrite=True).abandon()  # e.g. a wrong --init found during validation
    assert (tmp_path / "r" / "model.safetensors").read_bytes() == b"weights"
    Run(tmp_path / "new").abandon()
    assert not (tmp_path / "new").exists()  # a retry is not refused with "a run already exists"


def test_a_run_folder_is_locked_against_other_processes(tmp_path):
    import subprocess
    import sys

    run = Run(tmp_path / "r")
    code = ("import sys; from localdisc.runtime.run import Run; from localdisc.errors import ConfigError\n"
            "try:\n    Run(sys.argv[1], resume=True)\nexcept ConfigError as e:\n    print(e); sys.exit(3)")
    res = subprocess.run([sys.executable, "-c", code, str(run.path)], capture_output=True, text=True, timeout=60)
    assert res.returncode == 3 and f"pid {__import__('os').getpid()}" in res.stdout and "another localdisc process" in res.stdout
    run.finish()  # released: now another process may take it
    res = subprocess.run([sys.executable, "-c", code, str(run.path)], capture_output=True, text=True, timeout=60)
    assert res.returncode == 0, res.stdout + res.stderr


def test_resume_keeps_files_and_metrics_rows(tmp_path):
    run = Run(tmp_path / "r")
    run.begin()
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


def test_resume_falls_back_to_the_newest_intact_checkpoint(tmp_path, capsys):
    import json

    import torch

    from localdisc.runtime.checkpoint import latest_checkpoint, save_checkpoint

    for step in (10, 20):
        save_checkpoint(tmp_path, step, {"w": torch.full((2,), float(step))}, {}, keep=5)
    assert latest_checkpoint(tmp_path).name == "ckpt-00000020"
    (tmp_path / "latest.json").write_text(json.dumps({"checkpoint": "ckpt-00000030", "step": 30}))  # points at nothing
    assert latest_checkpoint(tmp_path).name == "ckpt-00000020" and "newest intact" in capsys.readouterr().out
    (tmp_path / "latest.json").unlink()
    (tmp_path / "ckpt-00000020" / "meta.json").unlink()  # damaged: not intact
    assert latest_checkpoint(tmp_path).name == "ckpt-00000010"
    # saving the same step again replaces the folder only once the new one is complete
    save_checkpoint(tmp_path, 10, {"w": torch.zeros(2)}, {}, keep=5)
    assert not list(tmp_path.glob(".ckpt-*"))
