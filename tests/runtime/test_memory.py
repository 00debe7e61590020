"""Defaults that fit the machine: the memory estimate, automatic patches, one-line refusals,
the dataset's resolution at every label budget, and --dry-run plans (on the real chest X-rays)."""

import numpy as np
import pytest
from PIL import Image

from localdisc.cli.main import main
from localdisc.errors import ConfigError
from localdisc.runtime.memory import budget_bytes, parse_size, plan_patch, step_bytes

ENC, DEC = (16, 32, 64, 128, 128), (128, 64, 32, 32)


def test_estimate_grows_with_pixels_images_and_width():
    a = step_bytes((256, 256), 4, ENC, DEC)
    assert step_bytes((512, 512), 4, ENC, DEC) > 3.5 * (a - (300 << 20))
    assert step_bytes((256, 256), 8, ENC, DEC) > a
    assert step_bytes((256, 256), 4, [2 * c for c in ENC], [2 * c for c in DEC]) > a
    # the measured peak of this U-Net (forward + backward, CPU, batch 4 at 256^2) was about 550 MB
    assert 450 << 20 < a < 1200 << 20


def test_budget_and_sizes(monkeypatch):
    assert parse_size("8G") == 8 << 30 and parse_size("512m") == 512 << 20 and parse_size("1000") == 1000
    for bad in ("nan", "-1G", "lots"):
        with pytest.raises(ConfigError):
            parse_size(bad)
    monkeypatch.setenv("LOCALDISC_MEMORY_LIMIT", "3G")
    assert budget_bytes() == 3 << 30


def test_large_automatic_images_train_on_patches_and_explicit_sizes_are_refused(monkeypatch):
    monkeypatch.setenv("LOCALDISC_MEMORY_LIMIT", "64G")
    patch, line = plan_patch((992, 1024), (), True, 5, 4, ENC, DEC, "cpu", 16)
    assert patch == (512, 512) and "patches" in line
    monkeypatch.setenv("LOCALDISC_MEMORY_LIMIT", "1G")
    patch, _ = plan_patch((992, 1024), (), True, 5, 4, ENC, DEC, "cpu", 16)  # smaller patches until one step fits
    assert patch and step_bytes(patch, 20, ENC, DEC) <= 1 << 30
    with pytest.raises(ConfigError, match="--patch-size"):
        plan_patch((992, 1024), (), False, 5, 4, ENC, DEC, "cpu", 16)
    assert plan_patch((128, 128), (), True, 1, 4, ENC, DEC, "cpu", 16)[0] == ()  # small images stay whole


def _varied(root, sizes):
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    rng = np.random.default_rng(0)
    for i, (h, w) in enumerate(sizes):
        Image.fromarray(rng.integers(0, 255, (h, w), dtype=np.uint8)).save(root / "images" / f"v{i}.png")
        m = np.zeros((h, w), np.uint8)
        m[h // 4: h // 2, w // 4: w // 2] = 255
        Image.fromarray(m).save(root / "masks" / f"v{i}.png")
    return root


def test_resolution_is_the_datasets_at_every_label_budget(tmp_path, capsys):
    data = _varied(tmp_path / "d", [(64 + 16 * (i % 7), 96 - 8 * (i % 5)) for i in range(20)])
    lines = []
    for labels in ("1", "3", "10"):
        assert main(["finetune", "--data", str(data), "--out", str(tmp_path / f"r{labels}"), "--labels", labels, "--dry-run"]) == 0
        lines.append(capsys.readouterr().out.split(";")[1].split(" images")[0])  # "HxW"
        assert not (tmp_path / f"r{labels}").exists()
    assert lines[0] == lines[1] == lines[2], lines


def test_forced_small_memory_is_a_one_line_refusal_before_any_folder(tmp_path, capsys, monkeypatch):
    data = _varied(tmp_path / "d", [(64, 64)] * 6)
    monkeypatch.setenv("LOCALDISC_MEMORY_LIMIT", "100M")
    for cmd in (["finetune", "--labels", "2"], ["pretrain", "--method", "ld"]):
        assert main([*cmd, "--data", str(data), "--out", str(tmp_path / "r"), "--image-size", "64", "64"]) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and "available" in err[0] and "--patch-size" in err[0], err
        assert not (tmp_path / "r").exists()


def test_chest_xrays_without_image_size_plan_patches_that_fit(shared_data, tmp_path, capsys):
    spec = f"cxr:{shared_data / 'CXR'}"
    for cmd in (["pretrain", "--method", "ld"], ["finetune", "--labels", "1"]):
        assert main([*cmd, "--data", spec, "--out", str(tmp_path / "r"), "--dry-run"]) == 0
        out = capsys.readouterr().out
        assert "patches" in out and "GB per step" in out and "dry run" in out, out
        assert not (tmp_path / "r").exists()
