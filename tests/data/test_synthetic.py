import json

import numpy as np
import pytest

from localdisc.data import synthetic
from localdisc.data.records import load_sample_fov, load_sample_image, load_sample_mask
from localdisc.errors import DataError


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("LOCALDISC_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache" / "synthetic"


def test_make_fundus_types_and_geometry():
    f = synthetic.make_fundus((64, 64), np.random.default_rng(0))
    img = f["image"]
    assert img.shape == (3, 64, 64) and img.dtype == np.float32 and 0 <= img.min() and img.max() <= 1
    for k in ("vessels", "disc", "fov"):
        assert f[k].dtype == bool and f[k].shape == (64, 64)
    assert not (f["vessels"] & ~f["fov"]).any() and not (f["disc"] & ~f["fov"]).any()
    assert f["vessels"].any() and f["disc"].any()
    assert img[:, ~f["fov"]].max() < 0.05  # black outside the field of view
    r, c = (int(round(v)) for v in f["landmarks"]["optic_disc"])
    assert f["disc"][r, c]
    fr, fc = f["landmarks"]["fovea"]
    dd = 2 * np.sqrt(f["disc"].sum() / np.pi)
    dist = np.hypot(fr - r, fc - c) / dd
    assert 1.8 < dist < 3.2  # ~2.5 disc diameters
    # the disc is the brightest structure, the fovea darker than the fundus around it
    green = img[1]
    assert green[f["disc"]].mean() > green[f["fov"] & ~f["disc"]].mean() + 0.1
    yy, xx = np.mgrid[0:64, 0:64]
    d = np.hypot(yy - fr, xx - fc)
    assert green[(d < 3)].mean() < green[(d > 8) & (d < 14) & f["fov"] & ~f["vessels"] & ~f["disc"]].mean()
    # vessels darker than background in green
    assert green[f["vessels"] & ~f["disc"]].mean() < green[f["fov"] & ~f["vessels"] & ~f["disc"]].mean()


def test_make_fundus_deterministic_and_both_eyes():
    a = synthetic.make_fundus((48, 48), np.random.default_rng(7))
    b = synthetic.make_fundus((48, 48), np.random.default_rng(7))
    assert np.array_equal(a["image"], b["image"]) and np.array_equal(a["vessels"], b["vessels"])
    eyes = {}
    for i in range(8):
        f = synthetic.make_fundus((48, 48), np.random.default_rng(i))
        eyes[f["eye"]] = f["landmarks"]
    assert set(eyes) == {"left", "right"}
    # right eye: disc on the image right of the fovea; left eye mirrored
    assert eyes["right"]["optic_disc"][1] > eyes["right"]["fovea"][1]
    assert eyes["left"]["optic_disc"][1] < eyes["left"]["fovea"][1]


def test_make_volume():
    v = synthetic.make_volume((16, 24, 24), np.random.default_rng(0))
    assert v["image"].shape == (1, 16, 24, 24) and v["image"].dtype == np.float32
    assert 0 <= v["image"].min() and v["image"].max() <= 1
    assert v["labels"].dtype == np.int64 and set(np.unique(v["labels"])) == {0, 1, 2}
    img = v["image"][0]
    assert img[v["labels"] == 1].mean() > img[v["labels"] == 0].mean() + 0.1
    b = tuple(int(round(x)) for x in v["landmarks"]["blob"])
    assert v["labels"][b] == 2


def test_fundus_dataset_layout_cache_and_determinism(cache, tmp_path):
    samples = synthetic.synthetic_fundus("5:48x48")
    assert len(samples) == 5 and [s.split for s in samples] == ["train"] * 4 + ["test"]
    s = samples[0]
    assert s.extra["task"] == "vessel" and s.extra["class_names"] == ["background", "vessel"]
    assert set(s.landmarks) == {"optic_disc", "fovea"}
    img, mask, fov = load_sample_image(s), load_sample_mask(s), load_sample_fov(s)
    assert img.shape == (3, 48, 48) and mask.shape == (48, 48) and set(np.unique(mask)) <= {0, 1}
    assert not (mask.astype(bool) & ~fov).any()
    folder = cache / "fundus-5-48x48-0"
    stamp = (folder / "manifest.csv").stat().st_mtime_ns
    disc = synthetic.synthetic_fundus_disc("5:48x48", seed=3)  # run seed does not change the data
    assert (folder / "manifest.csv").stat().st_mtime_ns == stamp  # reused, not regenerated
    dmask = load_sample_mask(disc[0])
    r, c = (int(round(v)) for v in disc[0].landmarks["optic_disc"])
    assert dmask[r, c] == 1 and disc[0].extra["task"] == "disc"
    # same seed -> byte-identical files; no temp folders left behind
    other = synthetic.generate_fundus_dataset(tmp_path / "again", 5, (48, 48), 0)
    for rel in ("images/fundus_000.png", "masks/fundus_004.png", "fov/fundus_002.png", "manifest.csv", "landmarks.json"):
        assert (folder / rel).read_bytes() == (other / rel).read_bytes()
    assert [p.name for p in cache.iterdir() if p.name.startswith(".")] == []
    assert json.loads((folder / "landmarks.json").read_text())["fundus_000"]["fovea"]


def test_resolve_source_and_bad_specs(cache):
    from localdisc.data.sources import resolve_source

    assert len(resolve_source("synthetic-fundus:3:32x32")) == 3
    with pytest.raises(DataError):
        resolve_source("synthetic-fundus:abc")
    with pytest.raises(DataError):
        resolve_source("synthetic-3d:2:32x32")


def test_volume_dataset_layout(cache):
    from localdisc.data.sources import resolve_source

    samples = resolve_source("synthetic-3d:2:16x24x24")
    assert [s.split for s in samples] == ["train", "test"]
    s = samples[0]
    assert s.spacing == (1.5, 1.0, 1.0) and s.extra["class_names"] == ["background", "tube", "blob"]
    img, lab = load_sample_image(s), load_sample_mask(s)
    assert img.shape == (1, 16, 24, 24) and lab.shape == (16, 24, 24) and set(np.unique(lab)) == {0, 1, 2}
    from localdisc.data.io import read_spacing

    assert read_spacing(s.image) == (1.5, 1.0, 1.0)
