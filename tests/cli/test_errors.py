"""Bad inputs end with exit status 2 and one line naming the file; nothing written is lost."""

import hashlib

import numpy as np
import pytest
import torch
from PIL import Image

from localdisc.cli.main import main
from localdisc.nets import UNet, UNetConfig
from localdisc.nets.transfer import save_backbone

TINY = ["--encoder-channels", "4", "8", "8", "--decoder-channels", "8", "8"]


@pytest.fixture(autouse=True)
def _cache(tmp_path_factory, monkeypatch):
    monkeypatch.setenv("LOCALDISC_CACHE", str(tmp_path_factory.getbasetemp() / "cache"))


def pairs(root, n=5, size=(24, 24), channels=1):
    (root / "images").mkdir(parents=True)
    (root / "masks").mkdir()
    rng = np.random.default_rng(0)
    for i in range(n):
        img = rng.integers(0, 255, size + ((3,) if channels == 3 else ()), dtype=np.uint8)
        Image.fromarray(img).save(root / "images" / f"p{i}.png")
        m = np.zeros(size, np.uint8)
        m[4:12, 6:16] = 255
        Image.fromarray(m).save(root / "masks" / f"p{i}.png")
    return root


def finetune(data, out, *extra):
    return main(["finetune", "--data", str(data), "--out", str(out), "--steps", "2", "--batch-size", "2", "--image-size", "24", "24", *TINY, *extra])


def check(capsys, rc, *names):
    err = capsys.readouterr().err
    assert rc == 2, err
    assert err.count("\n") == 1 and "error" in err
    for n in names:
        assert n in err, err


def test_truncated_image(tmp_path, capsys):
    d = pairs(tmp_path / "d")
    f = d / "images" / "p3.png"
    f.write_bytes(f.read_bytes()[:60])
    check(capsys, finetune(d, tmp_path / "r"), "p3.png")
    assert not (tmp_path / "r").exists()  # data is checked before the run folder is made


def test_mask_of_another_size(tmp_path, capsys):
    d = pairs(tmp_path / "d")
    Image.fromarray(np.zeros((20, 24), np.uint8)).save(d / "masks" / "p1.png")
    check(capsys, finetune(d, tmp_path / "r"), "p1.png", "size")


def test_mask_with_unexpected_values(tmp_path, capsys):
    d = pairs(tmp_path / "d")
    m = np.zeros((24, 24), np.uint8)
    m[2:5, 2:5], m[8:10, 8:10] = 255, 128
    Image.fromarray(m).save(d / "masks" / "p2.png")
    check(capsys, finetune(d, tmp_path / "r"), "p2.png")


def test_empty_folder(tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    check(capsys, finetune(tmp_path / "empty", tmp_path / "r"), "empty")


def test_image_mask_count_mismatch(tmp_path, capsys):
    d = pairs(tmp_path / "d")
    (d / "masks" / "p4.png").unlink()
    check(capsys, finetune(d, tmp_path / "r"), "p4.png")


def test_checkpoint_with_other_channel_count(tmp_path, capsys):
    d = pairs(tmp_path / "d", channels=1)
    pre = tmp_path / "pre3"
    save_backbone(UNet(UNetConfig(in_channels=3, encoder_channels=(4, 8, 8), decoder_channels=(8, 8))), pre, "fake")
    check(capsys, finetune(d, tmp_path / "r", "--init", str(pre)), "pre3", "channel")


def test_diverging_learning_rate(tmp_path, capsys):
    d = pairs(tmp_path / "d")
    rc = finetune(d, tmp_path / "r", "--lr", "1e30", "--steps", "6")
    check(capsys, rc, "step", str(tmp_path / "r"))


def _digest(folder):
    return {p.relative_to(folder): hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_nan_keeps_checkpoint_and_existing_run_is_untouched(tmp_path, capsys, monkeypatch):
    d = pairs(tmp_path / "d")
    out = tmp_path / "r"
    monkeypatch.setenv("LOCALDISC_NAN_AT_STEP", "3")
    check(capsys, finetune(d, out, "--steps", "4", "--checkpoint-every", "2", "--log-every", "1"), "step 3", str(out))
    monkeypatch.delenv("LOCALDISC_NAN_AT_STEP")
    from localdisc.runtime.checkpoint import latest_checkpoint, load_checkpoint

    weights, _, meta = load_checkpoint(latest_checkpoint(out))
    assert meta["step"] == 2 and all(torch.isfinite(v).all() for v in weights.values())
    assert [line.split(",")[0] for line in (out / "metrics.csv").read_text().splitlines()[1:]] == ["1", "2"]
    # a second run into the same folder without --resume/--overwrite changes nothing
    before = _digest(out)
    check(capsys, finetune(d, out), "--resume")
    # a resume that fails on bad data changes nothing either
    good = (d / "images" / "p0.png").read_bytes()
    (d / "images" / "p0.png").write_bytes(b"not a png")
    check(capsys, finetune(d, out, "--resume", "--steps", "4", "--checkpoint-every", "2", "--log-every", "1"), "p0.png")
    assert _digest(out) == before
    # a resume on other data or with other options is refused by name, and the run's config stays
    pairs(tmp_path / "d2")
    check(capsys, finetune(tmp_path / "d2", out, "--resume"), "data")
    check(capsys, finetune(d, out, "--resume", "--steps", "9"), "steps 4 -> 9")
    assert _digest(out) == before
    # and a good resume (the run's own options, read from its config.yaml) finishes from the kept checkpoint
    (d / "images" / "p0.png").write_bytes(good)
    assert finetune(d, out, "--resume", "--steps", "4") == 0
