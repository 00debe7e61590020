"""Hostile files: headers that promise too many pixels are refused before decoding, gzip output
is capped, corrupt gzip is one clear error, and sample ids from user data cannot name files
outside the output folder."""

from __future__ import annotations

import json
import gzip
import io
import struct
import zlib

import numpy as np
import pytest
from PIL import Image

from localdisc.data import files
from localdisc.data import io as dio
from localdisc.errors import DataError
from localdisc.utils import SafeNames, safe_name


def _png_header_only(path, width: int, height: int) -> None:
    """A tiny PNG whose IHDR claims width x height (a decompression bomb's header)."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\x00" * 16)) + chunk(b"IEND", b""))


def test_png_bomb_refused_from_its_header(tmp_path):
    bomb = tmp_path / "bomb.png"
    _png_header_only(bomb, 60000, 60000)
    assert bomb.stat().st_size < 100
    with pytest.raises(DataError, match=r"bomb.png: header promises 60000x60000 = 3,600,000,000 pixels"):
        dio.read_image(bomb)


@pytest.mark.parametrize("fmt", ["BMP", "TIFF", "GIF", "WEBP"])
def test_other_formats_checked_before_decoding(tmp_path, monkeypatch, fmt):
    monkeypatch.setattr(files, "MAX_PIXELS", 100)
    path = tmp_path / f"big.{fmt.lower()}"
    Image.fromarray(np.zeros((20, 30), np.uint8)).save(path, format=fmt)
    with pytest.raises(DataError, match=r"big\..*: header promises 20x30 = 600 pixels, more than the limit of 100"):
        dio.read_image(path)


def test_gzip_output_capped_and_corrupt_gzip_is_one_error(tmp_path, monkeypatch):
    monkeypatch.setattr(files, "MAX_PIXELS", 1000)
    big = tmp_path / "im.ppm.gz"
    with gzip.open(big, "wb") as f:
        f.write(b"P5\n2000 2000\n255\n" + b"\x00" * 4_000_000)  # compresses to a few KB
    with pytest.raises(DataError, match="im.ppm.gz: decompresses to more than"):
        dio.read_image(big)
    bad = tmp_path / "bad.ppm.gz"
    bad.write_bytes(gzip.compress(b"P5\n2 2\n255\n\x00\x00\x00\x00")[:-6] + b"garbage")
    with pytest.raises(DataError, match="bad.ppm.gz: corrupted gzip data"):
        dio.read_image(bad)


def test_nifti_volume_checked_from_its_header(tmp_path, monkeypatch):
    import nibabel as nib

    monkeypatch.setattr(files, "MAX_VOXELS", 1000)
    path = tmp_path / "v.nii.gz"
    nib.save(nib.Nifti1Image(np.zeros((12, 10, 10), np.float32), np.eye(4)), str(path))
    with pytest.raises(DataError, match=r"v.nii.gz: header promises 12x10x10 = 1,200 voxels"):
        dio.read_image(path)


def test_sample_ids_cannot_escape_the_output_folder():
    assert safe_name("../../x") == "_.._x" and safe_name("/etc/passwd") == "_etc_passwd" and safe_name("..") == "image"
    names = SafeNames()
    assert [names(i) for i in ("a/b", "a_b", "A_B", "ok")] == ["a_b", "a_b-2", "A_B-3", "ok"]


def test_evaluate_writes_hostile_ids_inside_its_folder(tmp_path, monkeypatch):
    from localdisc.tasks.evaluate import evaluate
    from localdisc.train.finetune import FinetuneConfig, finetune

    monkeypatch.setenv("LOCALDISC_CACHE", str(tmp_path / "cache"))
    root = tmp_path / "d"
    root.mkdir()
    rows = ["id,image,mask,split"]
    ids = ["a", "b", "c", "d", "../../escaped", "/tmp/abs_escape"]
    for i, sid in enumerate(ids):
        Image.fromarray((np.eye(16) * 200).astype(np.uint8)).save(root / f"i{i}.png")
        Image.fromarray((np.eye(16) * 255).astype(np.uint8)).save(root / f"m{i}.png")
        rows.append(f"{sid},i{i}.png,m{i}.png,{'test' if i >= 4 else 'train'}")
    (root / "data.csv").write_text("\n".join(rows) + "\n")
    run = finetune(FinetuneConfig(data=str(root / "data.csv"), out=str(tmp_path / "out" / "run"), steps=1, batch_size=2, image_size=(16, 16),
                                  encoder_channels=(4, 8), decoder_channels=(4,), val_fraction=0))
    from pathlib import Path

    absolute = Path("/tmp/abs_escape.png")  # where an unsanitized absolute id would land
    absolute.unlink(missing_ok=True)
    evaluate(run, split="test", overlays=True)
    written = sorted(p.name for p in (run / "eval-test" / "predictions").iterdir())
    assert written == ["_.._escaped.png", "_tmp_abs_escape.png"]
    assert not (tmp_path / "escaped.png").exists() and not (tmp_path / "out" / "escaped.png").exists()
    assert not absolute.exists()


def test_tampered_training_state_is_one_clear_error_without_unsafe_advice(tmp_path):
    import pickle

    import torch

    from localdisc.errors import ConfigError
    from localdisc.runtime.checkpoint import load_checkpoint, save_checkpoint

    ckpt = save_checkpoint(tmp_path, 2, {"w": torch.zeros(2)}, {"optimizer": {}})

    class Payload:
        def __reduce__(self):
            return (print, ("pwned",))

    (ckpt / "state.pt").write_bytes(pickle.dumps({"x": Payload()}))
    with pytest.raises(ConfigError) as e:
        load_checkpoint(ckpt)
    assert "state.pt" in str(e.value) and "weights_only" not in str(e.value) and e.value.__cause__ is None


def test_manifest_relative_paths_stay_in_its_folder(tmp_path, monkeypatch):
    from localdisc.data.folders import read_manifest

    (tmp_path / "d" / "sub").mkdir(parents=True)
    Image.fromarray(np.zeros((4, 4), np.uint8)).save(tmp_path / "outside.png")
    Image.fromarray(np.zeros((4, 4), np.uint8)).save(tmp_path / "d" / "sub" / "in.png")
    ok = tmp_path / "d" / "ok.csv"
    ok.write_text("image,id\nsub/in.png,a\nsub/../sub/in.png,b\n")  # '..' that stays inside is fine
    assert [s.id for s in read_manifest(ok)] == ["a", "b"]
    bad = tmp_path / "d" / "bad.csv"
    bad.write_text("image\n../outside.png\n")
    with pytest.raises(DataError, match=r"bad.csv row 2: image path '../outside.png' leaves the manifest's folder"):
        read_manifest(bad)
    monkeypatch.setenv("LOCALDISC_MANIFEST_OUTSIDE", "1")
    assert read_manifest(bad)[0].image.endswith("outside.png")
    monkeypatch.delenv("LOCALDISC_MANIFEST_OUTSIDE")
    absolute = tmp_path / "d" / "abs.csv"  # an absolute path is the author's explicit choice
    absolute.write_text(f"image\n{tmp_path / 'outside.png'}\nsub/in.png\n")
    assert [s.id for s in read_manifest(absolute)] == ["outside", "in"]


@pytest.mark.parametrize("odd", [np.array([0, 1000], np.uint16), np.array([0, 7], np.uint8)])
def test_an_odd_mask_is_refused_not_a_silent_extra_class(tmp_path, monkeypatch, odd):
    from localdisc.train.finetune import FinetuneConfig, finetune

    monkeypatch.setenv("LOCALDISC_CACHE", str(tmp_path / "cache"))
    for sub in ("images", "masks"):
        (tmp_path / "d" / sub).mkdir(parents=True)
    for i in range(6):
        Image.fromarray((np.eye(16) * 200).astype(np.uint8)).save(tmp_path / "d" / "images" / f"i{i}.png")
        values = odd if i == 3 else np.array([0, 255], np.uint8)
        Image.fromarray(values[np.eye(16, dtype=int)]).save(tmp_path / "d" / "masks" / f"i{i}.png")
    cfg = FinetuneConfig(data=str(tmp_path / "d"), out=str(tmp_path / "run"), steps=1, batch_size=2, image_size=(16, 16),
                         encoder_channels=(4, 8), decoder_channels=(4,), val_fraction=0, test_fraction=0.01)
    with pytest.raises(DataError, match=rf"masks/i3.png: label values \[0, {int(odd[1])}\] do not fit the dataset's label scheme"):
        finetune(cfg)
    assert not (tmp_path / "run").exists()  # refused before anything was written


@pytest.mark.parametrize("record, problem", [
    ({"labels": {"0": "background", "1": "a", "2": "b"}}, r"masks/i3.png: mask holds class 5, but the data names only 3 classes"),
    ({"flip_pairs": [[1, 7]]}, r"flip pairs \[\[1, 7\]\] name a class beyond the 6 classes"),
])
def test_a_dataset_json_that_does_not_fit_the_masks_is_refused(tmp_path, monkeypatch, record, problem):
    from localdisc.train.finetune import FinetuneConfig, finetune

    monkeypatch.setenv("LOCALDISC_CACHE", str(tmp_path / "cache"))
    for sub in ("images", "masks"):
        (tmp_path / "d" / sub).mkdir(parents=True)
    rows = ["image,mask,split"]
    for i in range(6):
        Image.fromarray((np.eye(16) * 200).astype(np.uint8)).save(tmp_path / "d" / "images" / f"i{i}.png")
        Image.fromarray((np.eye(16) * (5 if i == 3 else 1 + i % 2)).astype(np.uint8)).save(tmp_path / "d" / "masks" / f"i{i}.png")
        rows.append(f"images/i{i}.png,masks/i{i}.png,train")
    (tmp_path / "d" / "list.csv").write_text("\n".join(rows) + "\n")
    (tmp_path / "d" / "dataset.json").write_text(json.dumps(record))
    cfg = FinetuneConfig(data=str(tmp_path / "d" / "list.csv"), out=str(tmp_path / "run"), steps=1, batch_size=2, image_size=(16, 16),
                         encoder_channels=(4, 8), decoder_channels=(4,), val_fraction=0, num_classes=6 if "flip_pairs" in record else 0)
    with pytest.raises(DataError, match=problem):
        finetune(cfg)
    assert not (tmp_path / "run").exists()  # refused before anything was written


def test_pretraining_checks_every_header_first_and_worker_errors_are_one_line(tmp_path, capsys):
    from localdisc.cli.main import main

    (tmp_path / "d").mkdir()
    for i in range(9):
        Image.fromarray((np.random.default_rng(i).random((24, 24)) * 255).astype(np.uint8)).save(tmp_path / "d" / f"i{i}.png")
    (tmp_path / "d" / "i9.png").write_bytes(b"not an image at all")
    args = ["pretrain", "--method", "genesis", "--data", str(tmp_path / "d"), "--out", str(tmp_path / "run"), "--steps", "2",
            "--batch-size", "2", "--image-size", "24", "24", "--encoder-channels", "4", "8", "--decoder-channels", "4"]
    assert main(args) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "i9.png: unreadable image" in err[0]
    assert not (tmp_path / "run").exists()
    # a file that turns bad after the check (read by a worker process) still ends in one line naming it
    from localdisc.cli.main import _one_line

    wrapped = DataError("Caught DataError in DataLoader worker process 0.\nOriginal Traceback (most recent call last):\n  File \"x.py\", line 1\n"
                        "localdisc.errors.DataError: /data/i7.png: unreadable or truncated image (broken)\n")
    assert _one_line(wrapped) == "/data/i7.png: unreadable or truncated image (broken)"


def test_evaluate_says_when_it_converts_channels(tmp_path, monkeypatch, capsys):
    from localdisc.tasks.evaluate import evaluate
    from localdisc.train.finetune import FinetuneConfig, finetune

    monkeypatch.setenv("LOCALDISC_CACHE", str(tmp_path / "cache"))
    for name, mode in (("rgb", "RGB"), ("gray", "L")):
        for sub in ("images", "masks"):
            (tmp_path / name / sub).mkdir(parents=True)
        for i in range(4):
            Image.fromarray((np.eye(16) * 200).astype(np.uint8)).convert(mode).save(tmp_path / name / "images" / f"i{i}.png")
            Image.fromarray((np.eye(16) * 255).astype(np.uint8)).save(tmp_path / name / "masks" / f"i{i}.png")
    run = finetune(FinetuneConfig(data=str(tmp_path / "rgb"), out=str(tmp_path / "run"), steps=1, batch_size=2, image_size=(16, 16),
                                  encoder_channels=(4, 8), decoder_channels=(4,), val_fraction=0, test_fraction=0.25))
    capsys.readouterr()
    evaluate(run, data=str(tmp_path / "gray"), split="all", overlays=False)
    warnings = [line for line in capsys.readouterr().out.splitlines() if line.startswith("warning:")]
    assert len(warnings) == 1 and "1 channel(s) and the model 3" in warnings[0] and "gray repeated" in warnings[0]


def test_forged_tiff_geometry_is_refused(tmp_path):
    """A 5 KB uncompressed TIFF whose header claims 20 x 4,259,844 RGB pixels: Pillow would fill
    255 MB with zeros without a warning."""
    buf = io.BytesIO()
    Image.fromarray((np.arange(48 * 40 * 3) % 256).astype(np.uint8).reshape(48, 40, 3)).save(buf, format="TIFF")
    data = bytearray(buf.getvalue())
    off = struct.unpack("<I", data[4:8])[0]
    for i in range(struct.unpack("<H", data[off : off + 2])[0]):
        p = off + 2 + 12 * i
        tag = struct.unpack("<H", data[p : p + 2])[0]
        if tag in (256, 257):  # ImageWidth, ImageLength
            data[p + 8 : p + 12] = struct.pack("<I", 20 if tag == 256 else 4_259_844)
    path = tmp_path / "forged.tif"
    path.write_bytes(bytes(data))
    with pytest.raises(DataError, match=r"forged.tif: truncated or inconsistent TIFF: its strips hold 5,760 bytes"):
        dio.read_image(path)
    for a in (np.zeros((31, 33), bool), (np.arange(400) % 256).astype(np.uint8).reshape(20, 20)):  # honest TIFFs still load
        Image.fromarray(a).save(tmp_path / "ok.tif")
        assert dio.read_image(tmp_path / "ok.tif").shape == (1, *a.shape)


def test_max_pixels_option_and_overwrite_with_a_wrong_init_keeps_the_old_run(tmp_path, monkeypatch, capsys):
    from localdisc.cli.main import main

    monkeypatch.setattr(files, "MAX_PIXELS", files.MAX_PIXELS)  # module value and environment are restored after the test
    monkeypatch.delenv("LOCALDISC_MAX_PIXELS", raising=False)
    monkeypatch.setenv("LOCALDISC_CACHE", str(tmp_path / "cache"))
    for sub in ("images", "masks"):
        (tmp_path / "d" / sub).mkdir(parents=True)
    for i in range(5):
        Image.fromarray((np.eye(24) * 200).astype(np.uint8)).save(tmp_path / "d" / "images" / f"i{i}.png")
        Image.fromarray((np.eye(24) * 255).astype(np.uint8)).save(tmp_path / "d" / "masks" / f"i{i}.png")
    base = ["finetune", "--data", str(tmp_path / "d"), "--out", str(tmp_path / "run"), "--steps", "1", "--batch-size", "2",
            "--image-size", "24", "24", "--encoder-channels", "4", "8", "--decoder-channels", "4"]
    assert main(["--max-pixels", "500"] + base) == 2
    assert "header promises 24x24 = 576 pixels, more than the limit of 500" in capsys.readouterr().err
    assert main(["--max-pixels", "1e6"] + base) == 0
    weights = (tmp_path / "run" / "model.safetensors").read_bytes()
    assert main(base + ["--overwrite", "--init", str(tmp_path / "no-such-run")]) == 2
    assert "no-such-run" in capsys.readouterr().err
    assert (tmp_path / "run" / "model.safetensors").read_bytes() == weights  # the old run is intact
