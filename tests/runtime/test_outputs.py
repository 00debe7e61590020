"""Nothing lost: one test per class of output a user can hand in (runtime/outputs.py, Run, export,
evaluate, config values). Each builds the tiny files it needs."""

import hashlib
import os
import stat

import numpy as np
import pytest
from PIL import Image

from localdisc.cli.main import main
from localdisc.config import load_config_file
from localdisc.errors import ConfigError
from localdisc.runtime.outputs import MARKER, check_output_file, check_output_folder, foreign_entries, remove_stale_temporaries
from localdisc.runtime.run import Run

TINY = ["--encoder-channels", "4", "8", "8", "--decoder-channels", "8", "8", "--image-size", "16", "16", "--batch-size", "2", "--steps", "2",
        "--labels", "3", "--eval-every", "1", "--checkpoint-every", "1"]


def pairs(root, n=5, size=(16, 16)):
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    rng = np.random.default_rng(0)
    for i in range(n):
        Image.fromarray(rng.integers(0, 255, size, dtype=np.uint8)).save(root / "images" / f"p{i}.png")
        m = np.zeros(size, np.uint8)
        m[3:9, 4:12] = 255
        Image.fromarray(m).save(root / "masks" / f"p{i}.png")
    return root


def tree(folder):
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.rglob("*")) if p.is_file()}


def finetune(data, out, *extra):
    return main(["finetune", "--data", str(data), "--out", str(out), *TINY, *extra])


def one_line(capsys, *words):
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "Traceback" not in err[0], err
    for w in words:
        assert w in err[0], err[0]
    return err[0]


@pytest.fixture
def data(tmp_path):
    return pairs(tmp_path / "data")


def test_overwrite_never_deletes_a_folder_localdisc_did_not_make(tmp_path, data, capsys):
    user = tmp_path / "mine"
    user.mkdir()
    (user / "config.yaml").write_text("a: 1\n")  # looks like a run to a careless check
    (user / "notes.txt").write_text("precious")
    before = tree(tmp_path)
    assert finetune(data, user, "--overwrite") == 2
    one_line(capsys, "did not write", "notes.txt")
    assert tree(tmp_path) == before


def test_out_equal_to_or_inside_the_data_is_refused(tmp_path, data, capsys):
    before = tree(tmp_path)
    for out in (data, data / "images", data / "runs" / "x"):
        for extra in ((), ("--overwrite",)):
            assert finetune(data, out, *extra) == 2
            one_line(capsys)
    assert tree(tmp_path) == before and not (data / "runs").exists()


def test_overwrite_moves_only_localdiscs_files(tmp_path, data, capsys):
    run = tmp_path / "run"
    assert finetune(data, run) == 0
    assert (run / MARKER).is_file()
    (run / "my_notes.txt").write_text("keep me")
    (run / "metrics.csv").write_text("stale")
    assert finetune(data, run, "--overwrite") == 0
    assert (run / "my_notes.txt").read_text() == "keep me"
    assert (run / "metrics.csv").read_text() != "stale"


def test_existing_folder_with_files_is_never_written_into(tmp_path, data, capsys):
    user = tmp_path / "results"
    user.mkdir()
    (user / "metrics.csv").write_text("mine")
    assert finetune(data, user) == 2
    one_line(capsys, "metrics.csv")
    assert (user / "metrics.csv").read_text() == "mine" and sorted(os.listdir(user)) == ["metrics.csv"]


def test_out_that_is_a_file_or_dangling_link_is_one_line(tmp_path, data, capsys):
    f = tmp_path / "file.txt"
    f.write_text("x")
    link = tmp_path / "dangling"
    link.symlink_to(tmp_path / "nowhere")
    for out in (f, link, f / "sub"):
        assert finetune(data, out) == 2
        one_line(capsys)
    assert f.read_text() == "x" and link.is_symlink() and not (tmp_path / "nowhere").exists()


def test_export_never_replaces_a_run_file_or_an_existing_file_without_flag(tmp_path, data, capsys):
    run = tmp_path / "run"
    assert finetune(data, run) == 0
    notes = tmp_path / "notes.txt"
    notes.write_text("mine")
    before = tree(tmp_path)
    assert main(["export", str(run), "--format", "safetensors", "--out", str(notes)]) == 2
    one_line(capsys, "exists", "--overwrite")
    for target in ("best.safetensors", "model.safetensors", "config.yaml"):
        assert main(["export", str(run), "--format", "onnx", "--out", str(run / target), "--overwrite", "--no-check"]) == 2
        one_line(capsys, "run")
    assert tree(tmp_path) == before
    assert main(["evaluate", str(run)]) == 0  # the run still works
    out = tmp_path / "w.safetensors"
    assert main(["export", str(run), "--format", "safetensors", "--out", str(out)]) == 0
    assert main(["export", str(run), "--format", "safetensors", "--out", str(out)]) == 2
    one_line(capsys, "--overwrite")
    assert main(["export", str(run), "--format", "safetensors", "--out", str(out), "--overwrite"]) == 0


def test_evaluate_twice_needs_overwrite_and_leaves_no_stale_prediction(tmp_path, data, capsys):
    run = tmp_path / "run"
    assert finetune(data, run) == 0
    assert main(["evaluate", str(run), "--split", "all"]) == 0
    stale = run / "eval-all" / "predictions" / "old_image.png"
    stale.write_bytes(b"x")
    (run / "eval-all" / "readme.txt").write_text("mine")  # a user's file in a localdisc output folder stays
    assert main(["evaluate", str(run), "--split", "all"]) == 2
    one_line(capsys, "--overwrite")
    assert stale.exists()
    assert main(["evaluate", str(run), "--split", "all", "--overwrite"]) == 0
    assert not stale.exists() and (run / "eval-all" / "readme.txt").read_text() == "mine"


def test_resume_with_other_options_is_refused_and_config_kept(tmp_path, data, capsys):
    run = tmp_path / "run"
    assert finetune(data, run) == 0
    config = (run / "config.yaml").read_text()
    for extra in (("--image-size", "32", "32"), ("--steps", "5"), ("--in-channels", "3")):
        assert main(["finetune", "--data", str(data), "--out", str(run), *TINY, *extra, "--resume"]) == 2
        line = one_line(capsys, "differ")
        assert extra[0].lstrip("-").replace("-", "_") in line
        assert (run / "config.yaml").read_text() == config
    assert main(["finetune", "--out", str(run), "--resume"]) == 0  # the run's own options, from its config.yaml
    assert (run / "config.yaml").read_text() == config


@pytest.mark.parametrize("option, value", [("--lr", "nan"), ("--lr", "-1"), ("--weight-decay", "-1"), ("--labels", "inf"),
                                           ("--image-size", "0 0"), ("--steps", "0"), ("--val-fraction", "nan"), ("--seed", "99999999999")])
def test_bad_numbers_are_refused_before_any_folder_exists(tmp_path, data, capsys, option, value):
    out = tmp_path / "new"
    assert finetune(data, out, option, *value.split()) == 2
    one_line(capsys, option)
    assert not out.exists()


def test_failed_start_leaves_no_folder_and_the_retry_works(tmp_path, data, capsys):
    out = tmp_path / "run"
    # LD needs an even batch: refused before stage 1's folder exists, so the corrected retry is not refused
    ld = ["pretrain", "--method", "ld", "--data", str(data / "images"), "--out", str(out), "--encoder-channels", "4", "8", "8",
          "--decoder-channels", "8", "8", "--image-size", "16", "16", "--steps", "2", "--grid", "4"]
    assert main([*ld, "--batch-size", "1"]) == 2
    one_line(capsys, "--batch-size")
    assert not out.exists()
    assert main([*ld, "--batch-size", "2"]) == 0
    out = tmp_path / "run2"
    assert main(["pretrain", "--method", "genesis", "--data", str(data / "images"), "--out", str(out), "--encoder-channels", "4", "8", "8",
                 "--decoder-channels", "8", "8", "--image-size", "16", "16", "--steps", "1", "--batch-size", "0"]) == 2
    one_line(capsys)
    assert not out.exists()


def test_yaml_aliases_and_huge_or_special_configs_are_refused(tmp_path):
    bomb = tmp_path / "bomb.yaml"
    bomb.write_text('a: &a ["x","x","x","x","x","x","x","x","x"]\nb: &b [*a,*a,*a,*a,*a,*a,*a,*a,*a]\nc: [*b,*b,*b,*b,*b,*b,*b,*b,*b]\n')
    with pytest.raises(ConfigError, match="aliases"):
        load_config_file(bomb)
    big = tmp_path / "big.yaml"
    big.write_text("a: " + "x" * (2 << 20))
    with pytest.raises(ConfigError, match="larger than"):
        load_config_file(big)
    fifo = tmp_path / "fifo.yaml"
    os.mkfifo(fifo)
    with pytest.raises(ConfigError, match="not a regular file"):
        load_config_file(fifo)


def test_files_follow_the_umask_and_stale_temporaries_are_cleaned(tmp_path, data):
    old = os.umask(0o022)
    try:
        run = tmp_path / "run"
        assert finetune(data, run) == 0
    finally:
        os.umask(old)
    for name in ("model.safetensors", "best.safetensors", "config.yaml", "metrics.csv"):
        assert stat.S_IMODE((run / name).stat().st_mode) == 0o644, name
    (run / ".model.safetensors.abc.tmp").write_bytes(b"torn")
    (run / ".ckpt-00000009.x.tmp").mkdir()
    assert sorted(remove_stale_temporaries(run)) == [".ckpt-00000009.x.tmp", ".model.safetensors.abc.tmp"]
    (run / ".model.safetensors.abc.tmp").write_bytes(b"torn")
    Run(run, resume=True)  # the next start cleans them
    assert not list(run.glob(".*.tmp"))


def test_guards_directly(tmp_path):
    user = tmp_path / "u"
    user.mkdir()
    (user / "a.txt").write_text("x")
    assert foreign_entries(user) == ["a.txt"]
    with pytest.raises(ConfigError, match="did not write"):
        check_output_folder(user, overwrite=True)
    run = tmp_path / "r"
    run.mkdir()
    (run / MARKER).write_text("{}")
    (run / "model.safetensors").write_bytes(b"w")
    with pytest.raises(ConfigError, match="of the run"):
        check_output_file(run / "model.safetensors", overwrite=True, protected=[run])
    with pytest.raises(ConfigError, match="of the run"):
        check_output_file(run / "best.safetensors", overwrite=True, protected=[run])  # an owned name, even before it exists
