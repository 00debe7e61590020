"""Cluster-guided contrast: pseudo-class clustering (determinism, large-set path), the method's
prepare/training step in 2D and 3D, and the CLI end to end (pretrain + pseudo-classes assign)."""

from __future__ import annotations

import csv
import sys
import time

import numpy as np
import pytest
import torch
from PIL import Image

from localdisc.errors import ConfigError
from localdisc.methods import PrepareContext, get_method
from localdisc.methods.cluster_contrast import ClusterContrast, ClusterContrastConfig, cluster_features
from localdisc.nets import UNet, UNetConfig


def blobs(n_per: int, centers: int, dim: int, seed: int = 0, spread: float = 0.05) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    mus = rng.normal(size=(centers, dim)) * 3
    truth = np.repeat(np.arange(centers), n_per)
    return mus[truth] + rng.normal(size=(len(truth), dim)) * spread, truth


def same_partition(a: np.ndarray, b: np.ndarray) -> bool:
    pairs = set(zip(a.tolist(), b.tolist()))
    return len(pairs) == len(set(a.tolist())) == len(set(b.tolist()))


def test_ward_recovers_separated_blobs_and_is_deterministic():
    x, truth = blobs(30, 4, 6)
    a = cluster_features(x, num_classes=4, seed=0)
    b = cluster_features(x, num_classes=4, seed=0)
    assert np.array_equal(a.labels, b.labels) and same_partition(a.labels, truth)
    assert a.centroids.shape == (4, 6) and np.all(a.distances >= 0)
    assert a.labels[0] == 0  # numbered by first appearance


def test_distance_threshold_cut():
    x, truth = blobs(20, 3, 4)
    pc = cluster_features(x, distance_threshold=5.0)
    assert pc.num_classes == 3 and same_partition(pc.labels, truth)


def test_large_set_path_is_fast_and_never_clusters_all_points(monkeypatch):
    import scipy.cluster.hierarchy as h

    seen = []
    real = h.linkage
    monkeypatch.setattr(h, "linkage", lambda y, *a, **k: (seen.append(len(y)), real(y, *a, **k))[1])
    rng = np.random.default_rng(0)
    x = rng.normal(size=(20000, 16))
    t = time.time()
    a = cluster_features(x, num_classes=8, max_cluster_samples=2000, oversegment=500, seed=3)
    took = time.time() - t
    b = cluster_features(x, num_classes=8, max_cluster_samples=2000, oversegment=500, seed=3)
    assert seen and max(seen) <= 2000  # Ward only ever saw the k-means centers
    assert took < 20
    assert np.array_equal(a.labels, b.labels) and a.labels.shape == (20000,) and a.num_classes == 8
    xb, truth = blobs(2000, 5, 8)
    pc = cluster_features(xb, num_classes=5, max_cluster_samples=1000, oversegment=200)
    assert same_partition(pc.labels, truth)


def test_one_class_is_a_config_error():
    with pytest.raises(ConfigError, match="no negatives"):
        ClusterContrastConfig(num_pseudo_classes=1)


class TinySet:
    """Two groups of images (dark, bright) so the pseudo-classes have something to find."""

    def __init__(self, d: int, n: int = 8, c: int = 1):
        g = torch.Generator().manual_seed(0)
        self.images = [torch.rand(c, *([16] * d), generator=g) * 0.3 + (0.6 if i % 2 else 0.0) for i in range(n)]
        self.size = (16,) * d

    def __len__(self):
        return len(self.images)

    def __getitem__(self, i):
        return {"image": self.images[i], "index": torch.tensor(i)}


def make(d: int, **cfg) -> ClusterContrast:
    net = UNet(UNetConfig(spatial_dims=d, in_channels=1, encoder_channels=(4, 8, 16), decoder_channels=(8, 4)))
    opts = dict(proj_hidden=16, proj_dim=8, ae_steps=3, ae_channels=(4, 8), ae_batch_size=4, num_pseudo_classes=2)
    return ClusterContrast(net, ClusterContrastConfig(**{**opts, **cfg}))


@pytest.mark.parametrize("d", [2, 3])
def test_prepare_and_one_training_step(d, tmp_path):
    assert get_method("cluster-contrast") is ClusterContrast
    ds = TinySet(d)
    model = make(d)
    model.prepare(PrepareContext(step=0, run_dir=tmp_path, dataset=ds, device=torch.device("cpu"), seed=0))
    labels = model.pseudo_labels
    assert labels.shape == (8,) and set(labels.tolist()) == {0, 1}
    assert same_partition(labels, np.arange(8) % 2)  # dark vs bright
    for f in ("pseudo_classes.csv", "pseudo_classes.json", "pseudo_classes_extractor.safetensors", "pictures/pseudo_classes.png"):
        assert (tmp_path / f).is_file(), f
    batch = {"image": torch.stack([ds[i]["image"] for i in range(4)]), "index": torch.arange(4)}
    loss, logs = model.training_step(batch)
    assert torch.isfinite(loss) and logs["single_class_batch"] == 0
    loss.backward()
    assert model.backbone.encoder[0][0].weight.grad.abs().sum() > 0
    # a batch from one pseudo-class falls back to plain NT-Xent and says so
    loss, logs = model.training_step({"image": batch["image"][[0, 2]], "index": torch.tensor([0, 2])})
    assert torch.isfinite(loss) and logs["single_class_batch"] == 1


def test_refresh_uses_encoder_and_resume_keeps_state(tmp_path):
    ds = TinySet(2)
    model = make(2, same_class="positive")
    ctx = PrepareContext(step=0, run_dir=tmp_path, dataset=ds, device=torch.device("cpu"), seed=0, refresh_every=5)
    model.prepare(ctx)
    state = model.extra_state()
    assert state["pseudo_classes"]["source"] == "autoencoder"
    model.prepare(PrepareContext(**{**ctx.__dict__, "step": 5}))
    assert model.extra_state()["pseudo_classes"]["source"] == "encoder"
    assert '"source": "encoder"' in (tmp_path / "pseudo_classes.json").read_text()
    # resumed at a non-refresh step: the checkpointed pseudo-classes are reused, nothing recomputed
    other = make(2)
    other.load_extra_state(model.extra_state())
    other.compute_pseudo_classes = lambda ctx: pytest.fail("recomputed on resume")
    other.prepare(PrepareContext(**{**ctx.__dict__, "step": 7}))
    assert np.array_equal(other.pseudo_labels, model.pseudo_labels)


def test_needs_batch_dict():
    with pytest.raises(ConfigError, match="index"):
        make(2).training_step(torch.rand(4, 1, 16, 16))


def test_cli_pretrain_and_assign(tmp_path, monkeypatch):
    from localdisc.cli.main import main

    data = tmp_path / "pngs"
    data.mkdir()
    rng = np.random.default_rng(0)
    for i in range(8):
        base = 150 if i % 2 else 0
        Image.fromarray((rng.random((40, 40)) * 100 + base).astype(np.uint8)).save(data / f"x{i}.png")
    out = tmp_path / "run"
    argv = ["pretrain", "--method", "cluster-contrast", "--data", str(data), "--out", str(out), "--steps", "2", "--image-size", "32", "32",
            "--batch-size", "4", "--encoder-channels", "4", "8", "8", "--decoder-channels", "8", "8", "--ae-steps", "2", "--ae-channels", "4", "8",
            "--num-pseudo-classes", "2", "--proj-hidden", "16", "--proj-dim", "8", "--picture-every", "0", "--log-every", "1", "--device", "cpu"]
    monkeypatch.setattr(sys, "argv", ["localdisc", *argv])  # `pretrain` picks method options from sys.argv
    assert main(argv) == 0
    for f in ("pseudo_classes.csv", "pseudo_classes.json", "pictures/pseudo_classes.png", "backbone.safetensors", "method_state.json"):
        assert (out / f).is_file(), f
    # the autoencoder phase (minutes on real data, before the first step) shows progress
    assert "[autoencoder for the pseudo-classes] step 2/2" in (out / "train.log").read_text()
    with open(out / "pseudo_classes.csv") as f:
        train_rows = {r["image"]: r for r in csv.DictReader(f)}
    assert len(train_rows) == 8 and {r["pseudo_class"] for r in train_rows.values()} <= {"0", "1"}

    assigned = tmp_path / "assigned.csv"
    argv = ["pseudo-classes", "assign", str(out), "--data", str(data), "--out", str(assigned)]
    monkeypatch.setattr(sys, "argv", ["localdisc", *argv])
    assert main(argv) == 0
    with open(assigned) as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 8
    for r in rows:  # same images, same features: the nearest centroid is at most as far as the own one
        assert float(r["distance_to_centroid"]) <= float(train_rows[r["image"]]["distance_to_centroid"]) + 1e-4
    assert main(["pseudo-classes", "assign", str(tmp_path), "--data", str(data), "--out", str(assigned)]) == 2
