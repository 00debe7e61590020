"""The CLI's conventions, one test per rule: required options, ``auto`` devices, one-line
errors, choices, readable help, fast ``--help``, configs that reproduce their run."""

from __future__ import annotations

import subprocess
import sys
import time

import pytest
import yaml

from localdisc.cli.main import SUBCOMMANDS, build_parser, main
from localdisc.runtime.checkpoint import load_weights

TINY = ["--encoder-channels", "4", "8", "8", "--decoder-channels", "8", "8", "--picture-every", "0"]
DATA = "synthetic-fundus:6:32x32"


@pytest.fixture(autouse=True)
def _cache(tmp_path_factory, monkeypatch):
    monkeypatch.setenv("LOCALDISC_CACHE", str(tmp_path_factory.getbasetemp() / "cache"))


def _one_line_error(capsys, command: str) -> str:
    err = capsys.readouterr().err.strip()
    assert "Traceback" not in err and len(err.splitlines()) == 1, err
    assert err.startswith(f"localdisc {command}: error:"), err
    return err


@pytest.mark.parametrize("command", ["pretrain", "finetune"])
def test_real_commands_require_data_and_out(command, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main([command]) == 2
    assert "--data and --out are required" in _one_line_error(capsys, command)
    assert main([command, "--data", DATA]) == 2
    assert "--out is required" in _one_line_error(capsys, command)
    assert not any(tmp_path.iterdir())  # nothing was trained into ./runs
    conf = tmp_path / "c.yaml"
    conf.write_text(yaml.safe_dump({"data": DATA, "out": str(tmp_path / "from-config")}))
    assert main([command, "--config", str(conf), "--steps", "2", "--batch-size", "2", "--image-size", "32", "32", *TINY[:7]]) == 0


def _defaults(command: list[str]) -> dict:
    parser = build_parser(command)
    sub = next(a for a in parser._actions if a.dest == "command").choices[command[0]]
    if command[0] == "pseudo-classes":
        sub = next(a for a in sub._actions if a.dest == "action").choices["assign"]
    return {a.dest: a for a in sub._actions}


@pytest.mark.parametrize("command", [["pretrain"], ["finetune"], ["evaluate"], ["landmarks"], ["discover"], ["embed"], ["pseudo-classes", "assign"], ["demo"]])
def test_device_defaults_to_auto_everywhere(command):
    action = _defaults(command)["device"]
    default = action.default if action.default != "==SUPPRESS==" else None
    if default is None:  # dataclass options: the default lives in the config class
        from localdisc.train.finetune import FinetuneConfig
        from localdisc.train.pretrain import PretrainConfig

        default = {"pretrain": PretrainConfig, "finetune": FinetuneConfig}[command[0]]().device
    assert default == "auto"


@pytest.mark.parametrize("command,option,valid", [
    (["pretrain"], "method", {"ld", "ld-shape", "simclr", "densecl", "genesis", "cluster-contrast"}),
    (["pretrain"], "split", {"train", "val", "test", "all"}),
    (["pretrain"], "norm", {"batch", "instance", "group"}),
    (["finetune"], "schedule", {"cosine", "constant"}),
    (["evaluate"], "split", {"train", "val", "test", "all"}),
    (["evaluate"], "checkpoint", {"best", "last"}),
    (["export"], "checkpoint", {"best", "last"}),
    (["discover"], "split", {"train", "val", "test", "all"}),
])
def test_options_with_a_fixed_set_of_values_list_them(command, option, valid):
    assert set(_defaults(command)[option].choices) == valid


def test_discover_rule_defaults_to_argmax():
    assert _defaults(["discover"])["rule"].default == "argmax"


def test_the_run_is_positional_and_options_share_names():
    for command in ("evaluate", "export", "landmarks", "discover", "embed"):
        actions = _defaults([command])
        assert actions["run_dir"].option_strings == [], command
        assert "run" not in actions, command
    for command in ("evaluate", "landmarks", "discover"):
        assert "max_overlays" in _defaults([command]), command
    assert {"image_size", "num_images"} <= set(_defaults(["simulate-shapes"]))


@pytest.mark.parametrize("argv,needle", [
    (["pretrain", "--data", DATA, "--out", "{tmp}/a", "--image-size", "32"], "--image-size takes 2 or 3 numbers (or none, for the automatic default), got 1"),
    (["finetune", "--data", DATA, "--out", "{tmp}/b", "--device", "tpu"], "--device: expected auto, cpu, cuda or cuda:N"),
    (["finetune", "--data", DATA, "--out", "{tmp}/c", "--norm", "layer"], "invalid choice: 'layer'"),
    (["pretrain", "--data", DATA, "--out", "{tmp}/d", "--steps", "many"], "invalid int value: 'many'"),
    (["pretrain", "--method", "ldd", "--help"], "unknown method 'ldd'; valid: ld, ld-shape"),
    (["evaluate", "{tmp}/none", "--split", "validation"], "invalid choice: 'validation'"),
])
def test_bad_option_values_are_one_line(argv, needle, tmp_path, capsys):
    argv = [a.replace("{tmp}", str(tmp_path)) for a in argv]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert needle in err and "Traceback" not in err, err


def test_bad_values_in_a_config_file_are_one_line(tmp_path, capsys):
    for bad, needle in (({"steps": "many"}, "--steps: 'many' is not a valid int"), ({"image_size": [32]}, "--image-size takes 2 or 3 numbers"),
                        ({"norm": "layer"}, "--norm: invalid choice 'layer'"), ({"stepz": 3}, "unknown option(s) for PretrainConfig: stepz")):
        conf = tmp_path / "c.yaml"
        conf.write_text(yaml.safe_dump({"data": DATA, "out": str(tmp_path / "r"), **bad}))
        assert main(["pretrain", "--config", str(conf)]) == 2
        assert needle in _one_line_error(capsys, "pretrain")


@pytest.mark.parametrize("command", list(SUBCOMMANDS))
def test_help_reads_as_typed_and_cites_no_internal_document(command, capsys):
    argv = [command, "assign", "--help"] if command == "pseudo-classes" else [command, "--help"]
    assert main(argv) == 0
    text = capsys.readouterr().out
    assert "(default: (" not in text and "(default: )" not in text and "(default: [" not in text
    assert "SPEC" not in text


def test_help_shows_tuples_as_typed(capsys):
    assert main(["finetune", "--help"]) == 0
    text = " ".join(capsys.readouterr().out.split())
    assert "(default: 16 32 64 128 128)" in text and "--data DATA labeled images" in text and "(required)" in text


def test_top_level_help_imports_no_torch_and_is_fast():
    code = "import sys; from localdisc.cli.main import main; main(['--help']); assert 'torch' not in sys.modules, 'torch imported'"
    times = []
    for _ in range(3):
        t = time.perf_counter()
        done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
        times.append(time.perf_counter() - t)
        assert done.returncode == 0, done.stderr
        assert "pretrain" in done.stdout
    assert min(times) < 1.5, times


def _same_weights(a, b) -> bool:
    wa, wb = load_weights(a), load_weights(b)
    return set(wa) == set(wb) and all((wa[k] == wb[k]).all() for k in wa)


def test_pretrain_config_yaml_reproduces_the_run(tmp_path):
    first = tmp_path / "first"
    argv = ["pretrain", "--method", "ld", "--data", DATA, "--out", str(first), "--steps", "3", "--stage1-steps", "1", "--batch-size", "2",
            "--image-size", "32", "32", "--grid", "4", "--log-every", "1", *TINY]
    assert main(argv) == 0
    saved = yaml.safe_load((first / "config.yaml").read_text())
    # the top level is what was typed (the whole schedule), the stage-2 settings are under effective
    assert saved["steps"] == 3 and saved["method_config"]["stage"] == "both" and saved["init"] == ""
    assert saved["effective"]["steps"] == 2 and saved["effective"]["method_config"]["stage"] == "2"
    assert main(["pretrain", "--config", str(first / "config.yaml"), "--out", str(tmp_path / "again")]) == 0
    again = yaml.safe_load((tmp_path / "again" / "config.yaml").read_text())
    assert {k: v for k, v in again.items() if k not in ("out", "effective")} == {k: v for k, v in saved.items() if k not in ("out", "effective")}
    assert _same_weights(first / "model.safetensors", tmp_path / "again" / "model.safetensors")
    assert _same_weights(first / "stage1" / "model.safetensors", tmp_path / "again" / "stage1" / "model.safetensors")


def test_finetune_config_yaml_reproduces_the_run(tmp_path):
    first = tmp_path / "first"
    argv = ["finetune", "--data", DATA, "--out", str(first), "--steps", "3", "--batch-size", "2", "--image-size", "32", "32",
            "--labels", "3", "--pdcr", "--pdcr-layers", "decoder.1", "--eval-every", "2", *TINY[:7]]
    assert main(argv) == 0
    saved = yaml.safe_load((first / "config.yaml").read_text())
    assert saved["pdcr_tau"] == -1.0 and saved["effective"]["pdcr_tau"] == 1.0  # automatic values stay automatic at the top
    assert main(["finetune", "--config", str(first / "config.yaml"), "--out", str(tmp_path / "again")]) == 0
    assert _same_weights(first / "model.safetensors", tmp_path / "again" / "model.safetensors")
