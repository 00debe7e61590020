"""``localdisc embed``: embeddings and cluster maps of a pretraining run, with the source geometry."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image

from localdisc.cli.main import main

TINY = ["--encoder-channels", "4", "8", "8", "--decoder-channels", "8", "4", "--embed-dim", "4", "--grid", "2", "--batch-size", "2", "--stage", "2", "--steps", "1",
        "--num-clusters", "3"]


def test_2d_embeddings_clusters_and_pictures(tmp_path):
    run = tmp_path / "run"
    assert main(["pretrain", "--method", "ld", "--data", "synthetic-fundus:3:48x40", "--image-size", "32", "32", "--split", "all", "--out", str(run), *TINY]) == 0
    out = tmp_path / "emb"
    assert main(["embed", str(run), "--data", "synthetic-fundus:3:48x40", "--out", str(out), "--max-overlays", "1"]) == 0
    info = json.loads((out / "embed.json").read_text())
    assert info["embedding_dim"] == 4 and info["grid_size"] == [32, 32] and len(info["images"]) == 3
    first = info["images"][0]
    v = np.load(out / first["embeddings"])
    assert v.shape == (4, 32, 32) and v.dtype == np.float16
    np.testing.assert_allclose(np.linalg.norm(v.astype(np.float32), axis=0), 1.0, atol=1e-2)  # LD's unit vectors v
    # the same numbers as the run's own embedding head on the resized image
    from localdisc.data.datasets import resize_image
    from localdisc.data.records import load_sample_image
    from localdisc.data.sources import resolve_source
    from localdisc.tasks.discover import load_run_model

    model = load_run_model(run, "cpu")
    s = resolve_source("synthetic-fundus:3:48x40")[0]
    with torch.no_grad():
        want = model.method.embed(resize_image(torch.from_numpy(load_sample_image(s, model.channels)), (32, 32))[None])[0].numpy()
    np.testing.assert_allclose(v.astype(np.float32), want, atol=2e-3)
    clusters = np.asarray(Image.open(out / first["clusters"]))
    assert clusters.shape == tuple(first["source_size"]) == (48, 40) and clusters.max() < 3  # at the source's size
    assert (out / first["picture"]).is_file() and "picture" not in info["images"][1]


def test_3d_embeddings_keep_the_source_geometry(tmp_path):
    nib = pytest.importorskip("nibabel")
    from localdisc.data.io import read_volume

    rng = np.random.default_rng(0)
    aff = np.array([[0.0, -0.9, 0.2, 10.0], [0.7, 0.0, 0.0, -5.0], [0.0, 0.1, 2.5, 30.0], [0, 0, 0, 1]])  # oblique, permuted, anisotropic
    data = tmp_path / "vols"
    data.mkdir()
    for i in range(2):
        nib.save(nib.Nifti1Image(rng.random((20, 18, 10)).astype(np.float32), aff), str(data / f"v{i}.nii.gz"))
    run = tmp_path / "run3d"
    assert main(["pretrain", "--method", "ld", "--data", str(data), "--image-size", "8", "16", "16", "--split", "all", "--out", str(run), *TINY]) == 0
    out = tmp_path / "emb"
    assert main(["embed", str(run), "--data", str(data), "--out", str(out)]) == 0
    entry = json.loads((out / "embed.json").read_text())["images"][0]
    src = nib.load(str(data / "v0.nii.gz"))
    clusters = nib.load(str(out / entry["clusters"]))
    np.testing.assert_allclose(clusters.affine, src.affine, atol=1e-5)  # overlays the scan voxel for voxel
    assert clusters.shape == src.shape
    emb = nib.load(str(out / entry["embeddings"]))
    assert emb.shape == (16, 16, 8, 4)  # (x, y, z, D) of the network's grid
    # the grid covers the scan's field of view: its outer corners are the scan's outer corners
    _, geom = read_volume(data / "v0.nii.gz")
    src_dhw = np.array(geom.source_shape)[np.argsort(geom.ornt[:, 0])][::-1]  # canonical (z, y, x) sizes
    corner = lambda a, n: (a @ np.array([n[0] - 0.5, n[1] - 0.5, n[2] - 0.5, 1.0]))[:3]  # noqa: E731
    np.testing.assert_allclose(corner(emb.affine, (16, 16, 8)), corner(geom.canonical_affine(), src_dhw[::-1]), atol=1e-4)
    np.testing.assert_allclose(corner(emb.affine, (0, 0, 0)), corner(geom.canonical_affine(), (0, 0, 0)), atol=1e-4)
