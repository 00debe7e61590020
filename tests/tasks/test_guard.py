"""The guard of `finetune --init`: a random-init twin on the same labels, the better one on
validation kept, and every consumer of the run (evaluate, predict, load_finetuned) following it."""

import json

import pytest
import torch
from test_verdict import TINY, pairs  # tests/tasks is on sys.path (pytest prepend mode)

from localdisc.cli.main import main
from localdisc.errors import ConfigError
from localdisc.runtime.checkpoint import load_weights
from localdisc.tasks.guard import choose
from localdisc.train.finetune_model import kept_model_dir, load_finetuned

FT = ["--steps", "3", "--eval-every", "3", "--val-fraction", "2", "--labels", "3", "--image-size", "24", "24", "--batch-size", "2"]


def test_choose_keeps_pretrained_unless_random_is_strictly_better():
    assert choose(0.70, 0.71) == "random-init"
    assert choose(0.71, 0.70) == "pretrained"
    assert choose(0.70, 0.70) == "pretrained"
    assert choose(None, 0.9) == "pretrained" and choose(0.1, None) == "pretrained"


@pytest.fixture(scope="module")
def guarded(tmp_path_factory):
    root = tmp_path_factory.mktemp("guard")
    data = pairs(root / "labeled", n=8)
    assert main(["pretrain", "--method", "genesis", "--data", str(data / "images"), "--out", str(root / "pre"), "--steps", "2", *TINY]) == 0
    assert main(["finetune", "--data", str(data), "--init", str(root / "pre"), "--out", str(root / "ft"), *FT]) == 0
    return root, data


def test_twin_trains_on_the_same_images_and_the_decision_follows_validation(guarded, capsys):
    root, _ = guarded
    run, twin = root / "ft", root / "ft" / "random-init"
    decision = json.loads((run / "guard.json").read_text())
    main_info, twin_info = json.loads((run / "model.json").read_text()), json.loads((twin / "model.json").read_text())
    assert decision["pretrained"]["best_val_dice"] == main_info["best_val_dice"]
    assert decision["random_init"]["best_val_dice"] == twin_info["best_val_dice"]
    assert decision["kept"] == choose(main_info["best_val_dice"], twin_info["best_val_dice"])
    assert twin_info["init"] == "" and twin_info["unet"] == main_info["unet"]
    assert json.loads((twin / "splits.json").read_text()) == json.loads((run / "splits.json").read_text())


def test_consumers_load_the_kept_model(guarded, tmp_path):
    root, _ = guarded
    run = root / "ft"
    decision = json.loads((run / "guard.json").read_text())
    try:
        for kept, folder in (("random-init", run / "random-init"), ("pretrained", run)):
            (run / "guard.json").write_text(json.dumps({**decision, "kept": kept}))
            assert kept_model_dir(run) == folder
            unet, _ = load_finetuned(run)
            want = load_weights(folder / "best.safetensors")
            assert all(torch.equal(unet.state_dict()[k], v) for k, v in want.items())
            assert main(["evaluate", str(run), "--out", str(tmp_path / f"ev-{kept}")]) == 0
            summary = json.loads((tmp_path / f"ev-{kept}" / "summary.json").read_text())
            assert summary["model"] == str(folder)
    finally:
        (run / "guard.json").write_text(json.dumps(decision))


def test_guard_false_trains_no_twin_and_overwrite_replaces_both(guarded, capsys):
    root, data = guarded
    out = root / "ft-noguard"
    assert main(["finetune", "--data", str(data), "--init", str(root / "pre"), "--out", str(out), "--guard", "false", *FT]) == 0
    assert not (out / "random-init").exists() and not (out / "guard.json").exists()
    before = json.loads((root / "ft" / "guard.json").read_text())
    capsys.readouterr()
    assert main(["finetune", "--data", str(data), "--init", str(root / "pre"), "--out", str(root / "ft"), "--overwrite", *FT]) == 0
    assert "guard: " in capsys.readouterr().out
    assert json.loads((root / "ft" / "guard.json").read_text()) == before  # same seed: the same runs and the same choice


def test_a_bad_guard_decision_is_an_error_not_ignored(guarded, tmp_path):
    root, _ = guarded
    run = root / "ft"
    decision = (run / "guard.json").read_text()
    try:
        for text in ("{not json", '["random-init"]', '{"kept": "random"}'):
            (run / "guard.json").write_text(text)
            with pytest.raises(ConfigError, match="guard.json"):
                kept_model_dir(run)
        (run / "guard.json").write_text(json.dumps({"kept": "random-init"}))
        (run / "random-init" / "model.json").rename(run / "random-init" / "model.moved")
        with pytest.raises(ConfigError, match="no finished run"):
            kept_model_dir(run)
        assert main(["evaluate", str(run), "--out", str(tmp_path / "ev")]) == 2
    finally:
        if (run / "random-init" / "model.moved").exists():
            (run / "random-init" / "model.moved").rename(run / "random-init" / "model.json")
        (run / "guard.json").write_text(decision)


def test_the_card_says_which_model_is_in_use(guarded):
    root, _ = guarded
    info = json.loads((root / "ft" / "model.json").read_text())
    card = (root / "ft" / "MODEL.md").read_text()
    assert info["guard"]["kept"] == json.loads((root / "ft" / "guard.json").read_text())["kept"]
    assert ("Model in use: the random-init twin" in card) == (info["guard"]["kept"] == "random-init")
    assert "random-init/" in card


def test_a_user_folder_named_like_the_twin_is_refused_before_training(guarded, capsys):
    root, data = guarded
    out = root / "ft-user"
    (out / "random-init").mkdir(parents=True)
    (out / "random-init" / "notes.txt").write_text("mine")
    assert main(["finetune", "--data", str(data), "--init", str(root / "pre"), "--out", str(out), *FT]) == 2
    assert "random-init" in capsys.readouterr().err
    assert sorted(p.name for p in out.rglob("*")) == ["notes.txt", "random-init"]


def test_resume_may_switch_the_guard_off(guarded):
    root, data = guarded
    assert main(["finetune", "--data", str(data), "--init", str(root / "pre"), "--out", str(root / "ft"), "--resume", "--guard", "false", *FT]) == 0
