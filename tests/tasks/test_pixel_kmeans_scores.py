"""k-means over pixel features scored against labels (tasks/pixel_features.py): N and the
matching chosen on training images, seeds merged, the untrained control."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest
import torch
from PIL import Image

from localdisc.data.records import Sample
from localdisc.nets import UNet, UNetConfig
from localdisc.tasks.pixel_features import average_seeds, kmeans_chosen_on_train, per_image_mean_dice, reinitialized


def _squares(folder, n, seed):
    """n grey images (24x24) with a bright square (the structure, class 1) at a random place."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    samples = []
    for i in range(n):
        img, mask = np.full((24, 24), 0.2) + rng.normal(0, 0.02, (24, 24)), np.zeros((24, 24), np.uint8)
        r, c = rng.integers(2, 12, 2)
        img[r : r + 9, c : c + 9] += 0.6
        mask[r : r + 9, c : c + 9] = 1
        Image.fromarray((np.clip(img, 0, 1) * 255).astype(np.uint8)).save(folder / f"{i}.png")
        Image.fromarray(mask).save(folder / f"{i}_mask.png")
        samples.append(Sample(f"{seed}-{i}", str(folder / f"{i}.png"), str(folder / f"{i}_mask.png"), extra={"class_names": ["background", "square"]}))
    return samples


def test_n_and_the_matching_are_chosen_on_training_images_and_applied_to_test(tmp_path):
    train, test = _squares(tmp_path / "train", 4, 0), _squares(tmp_path / "test", 3, 1)
    model = SimpleNamespace(method=None, size=(24, 24), channels=1)
    r = kmeans_chosen_on_train("intensity", model, train, test, choices=[6, 2], seed=0)
    assert r["num_clusters_chosen_on_train"] == 2  # two grey levels: two clusters match best, whatever the order tried
    assert r["mean_dice"] > 0.95 and r["mean_dice_on_train"] > 0.95 and r["num_images"] == 3
    assert r["matched_on_test"]["mapping"] == r["mapping"]
    # a matching chosen on a position-only clustering of training images does not find the squares
    r = kmeans_chosen_on_train("position", model, train, test, choices=[2], seed=0)
    assert r["mean_dice"] < 0.8


def test_seeds_are_averaged_per_image_and_their_choices_shown():
    rows = [{"mapping": {"a": 1}, "dice_pooled": {"a": 0.5}, "num_clusters": 3, "per_image": [[0.2, 0.4], [0.6, 0.8]], "dice": {"a": 0, "b": 0},
             "num_clusters_chosen_on_train": n, "mean_dice_on_train": t,
             "matched_on_test": {"per_image": [[1.0, 1.0], [0.0, 0.0]], "dice": {"a": 0, "b": 0}}} for n, t in ((3, 0.5), (4, 0.7))]
    rows[1]["per_image"] = [[0.4, 0.6], [0.8, 1.0]]
    m = average_seeds(rows)
    assert m["dice"] == pytest.approx({"a": 0.5, "b": 0.7}) and m["dice_std"] == pytest.approx({"a": 0.2, "b": 0.2})
    assert m["mean_dice"] == pytest.approx(0.6) and m["num_clusters_chosen_on_train"] == "3/4" and m["seeds"] == 2
    assert m["mapping"] == {"a": 1} and m["mean_dice_on_train"] == pytest.approx(0.6) and m["matched_on_test"]["mean_dice"] == 0.5
    assert np.allclose(per_image_mean_dice(rows), [[0.3, 0.5], [0.7, 0.9]])  # (images, seeds)


def test_the_untrained_control_has_new_weights_of_the_same_network():
    torch.manual_seed(0)
    net = UNet(UNetConfig(spatial_dims=2, in_channels=1, encoder_channels=(4, 8), decoder_channels=(4,)))
    for p in net.parameters():
        p.data.fill_(0.5)
    a, b, again = reinitialized(net, 1), reinitialized(net, 2), reinitialized(net, 1)
    before = {k: v.clone() for k, v in net.state_dict().items()}
    assert all(torch.equal(v, before[k]) for k, v in net.state_dict().items())  # the original is kept
    weights = [k for k, v in before.items() if v.dtype.is_floating_point and v.dim() > 1]
    assert all(not torch.equal(a.state_dict()[k], before[k]) for k in weights)
    assert all(torch.equal(a.state_dict()[k], again.state_dict()[k]) for k in before)  # the seed decides
    assert any(not torch.equal(a.state_dict()[k], b.state_dict()[k]) for k in weights)
