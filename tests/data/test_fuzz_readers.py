"""Fuzzing the readers (hypothesis, bounded): whatever the bytes, reading an image, mask or
volume either returns an array within the pixel limit or raises the project's DataError with
the file named; never another exception type, never more pixels than the limit allows."""

from __future__ import annotations

import io

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from localdisc.data import files
from localdisc.data import io as dio
from localdisc.data.folders import read_manifest
from localdisc.errors import DataError

LIMIT = 4096


def _valid(fmt: str) -> bytes:
    buf = io.BytesIO()
    Image.fromarray((np.arange(48 * 40) % 256).astype(np.uint8).reshape(48, 40)).save(buf, format=fmt)
    return buf.getvalue()


SEEDS = {".png": _valid("PNG"), ".bmp": _valid("BMP"), ".tif": _valid("TIFF"), ".gif": _valid("GIF"), ".webp": _valid("WEBP")}
FUZZ = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


@st.composite
def damaged(draw):
    suffix = draw(st.sampled_from(sorted(SEEDS)))
    data = bytearray(SEEDS[suffix])
    for _ in range(draw(st.integers(0, 6))):  # flip bytes, header included
        i = draw(st.integers(0, len(data) - 1))
        data[i] = draw(st.integers(0, 255))
    cut = draw(st.integers(8, len(data)))
    return suffix, bytes(data[:cut]) + draw(st.binary(max_size=32))


@FUZZ
@given(damaged(), st.sampled_from(["image", "mask"]))
def test_images_and_masks_fail_only_with_data_error(tmp_path, monkeypatch, case, kind):
    monkeypatch.setattr(files, "MAX_PIXELS", LIMIT)
    suffix, data = case
    path = tmp_path / f"fuzz{suffix}"
    path.write_bytes(data)
    try:
        arr = dio.read_image(path) if kind == "image" else dio.read_mask(path)
    except DataError as e:
        assert str(path) in str(e)
        return
    spatial = arr.shape[1:] if kind == "image" else arr.shape
    assert int(np.prod(spatial)) <= LIMIT


@FUZZ
@given(st.binary(min_size=0, max_size=400), st.sampled_from([".nii", ".npy", ".png.gz"]))
def test_volumes_and_gzip_fail_only_with_data_error(tmp_path, monkeypatch, data, suffix):
    monkeypatch.setattr(files, "MAX_PIXELS", LIMIT)
    monkeypatch.setattr(files, "MAX_VOXELS", LIMIT)
    path = tmp_path / f"fuzz{suffix}"
    if suffix == ".png.gz":
        import gzip

        data = gzip.compress(SEEDS[".png"][:20] + data)
    path.write_bytes(data)
    try:
        dio.read_image(path)
    except DataError as e:
        assert str(path) in str(e)


@FUZZ
@given(st.text(alphabet=st.characters(blacklist_categories=("Cs",)), max_size=200))
def test_manifest_fails_only_with_data_error(tmp_path, text):
    path = tmp_path / "m.csv"
    path.write_text(text, encoding="utf-8")
    try:
        read_manifest(path)
    except DataError as e:
        assert str(path) in str(e)


@pytest.mark.parametrize("suffix", sorted(SEEDS))
def test_seeds_are_readable(tmp_path, suffix):
    path = tmp_path / f"ok{suffix}"
    path.write_bytes(SEEDS[suffix])
    assert dio.read_image(path).shape[1:] == (48, 40)
