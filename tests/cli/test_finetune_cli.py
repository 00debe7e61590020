import json

import pytest
import yaml

from localdisc.cli.main import main

TINY = ["--encoder-channels", "4", "8", "8", "--decoder-channels", "8", "8"]


@pytest.fixture(autouse=True)
def _cache(tmp_path_factory, monkeypatch):
    monkeypatch.setenv("LOCALDISC_CACHE", str(tmp_path_factory.getbasetemp() / "cache"))


def test_help_lists_every_option(capsys):
    assert main(["finetune", "--help"]) == 0
    text = capsys.readouterr().out
    for opt in ("--labels", "--val-fraction", "--patch-size", "--init", "--transfer", "--freeze-encoder-steps", "--pdcr-windows", "--uafs-stages", "--resume"):
        assert opt in text


def test_config_file_and_overrides_then_evaluate(tmp_path, capsys):
    conf = tmp_path / "ft.yaml"
    conf.write_text(yaml.safe_dump({"data": "synthetic-fundus:8:32x32", "steps": 5, "batch_size": 2, "image_size": [32, 32], "labels": 3}))
    out = tmp_path / "run"
    assert main(["finetune", "--config", str(conf), "--out", str(out), "--steps", "2", "--labels", "0.5", *TINY]) == 0
    saved = yaml.safe_load((out / "config.yaml").read_text())
    assert saved["steps"] == 2 and saved["labels"] == 0.5 and saved["image_size"] == [32, 32]
    assert len(json.loads((out / "splits.json").read_text())["train"]) == 2  # half of the 4 non-val training images
    assert main(["evaluate", str(out), "--out", str(tmp_path / "ev"), "--max-overlays", "1"]) == 0
    printed = capsys.readouterr().out
    assert "vessel" in printed and "auc" in printed
    assert len(list((tmp_path / "ev" / "overlays").glob("*.png"))) == 1


def test_demo_quick(tmp_path, capsys):
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # one thread is faster on a loaded 2-core machine; restored below
    try:
        _demo_quick(tmp_path, capsys)
    finally:
        torch.set_num_threads(threads)


def _demo_quick(tmp_path, capsys):
    assert main(["demo", "--quick", "--out", str(tmp_path / "demo")]) == 0
    text = (tmp_path / "demo" / "summary.md").read_text()
    assert "| random |" in text
    assert str(tmp_path / "demo") in capsys.readouterr().out
    # the demo replaces its own earlier results (the README's command run twice), never a user's folder
    assert main(["demo", "--quick", "--out", str(tmp_path / "demo")]) == 0
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("x")
    assert main(["demo", "--quick", "--out", str(tmp_path / "mine")]) == 2
    assert sorted(p.name for p in (tmp_path / "mine").iterdir()) == ["notes.txt"]
