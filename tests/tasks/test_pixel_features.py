"""Pixel features for k-means: each part equals its definition computed by hand."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from localdisc.errors import ConfigError
from localdisc.methods.ld import LDConfig, LocalDiscrimination
from localdisc.nets import UNet, UNetConfig
from localdisc.tasks.pixel_features import parse_parts, pixel_features, position_grid

TINY = dict(encoder_channels=(4, 8, 8), decoder_channels=(8, 8))


def tiny_ld(d: int = 2) -> LocalDiscrimination:
    torch.manual_seed(0)
    return LocalDiscrimination(UNet(UNetConfig(spatial_dims=d, in_channels=1, **TINY)), LDConfig(stage="1", grid=4, embed_dim=6)).eval()


def test_position_spans_minus_one_to_one_along_each_axis():
    f = pixel_features(torch.zeros(1, 3, 5), "position")
    assert f.shape == (15, 2)
    grid = f.T.reshape(2, 3, 5)
    assert torch.allclose(grid[0, :, 0], torch.tensor([-1.0, 0.0, 1.0]))  # rows
    assert torch.allclose(grid[1, 0], torch.linspace(-1, 1, 5))  # columns
    assert position_grid((2, 3, 4)).shape == (3, 2, 3, 4)


def test_intensity_is_the_z_scored_grey_value_at_half_weight():
    img = torch.rand(3, 4, 6)
    g = img.mean(0)
    expected = 0.5 * (g - g.mean()) / g.std()
    assert torch.allclose(pixel_features(img, "intensity")[:, 0], expected.flatten(), atol=1e-6)


def test_parts_are_concatenated_in_the_order_given():
    img = torch.rand(1, 4, 4)
    both = pixel_features(img, "intensity+position")
    assert torch.equal(both[:, :1], pixel_features(img, "intensity"))
    assert torch.equal(both[:, 1:], pixel_features(img, ["position"]))


def test_embedding_and_deep_match_the_network_by_hand():
    model = tiny_ld()
    img = torch.rand(1, 16, 16)
    with torch.no_grad():
        v = F.normalize(model.embed(img[None]), dim=1)[0].flatten(1).T
        deepest = model.backbone.forward_features(img[None]).encoder[-1]  # (1, 8, 4, 4)
        up = F.interpolate(F.normalize(deepest, dim=1), size=(16, 16), mode="bilinear", align_corners=False)
        deep = F.normalize(up, dim=1)[0].flatten(1).T
    assert torch.allclose(pixel_features(img, "embedding", model), v, atol=1e-6)
    got = pixel_features(img, "deep+position", model)
    assert got.shape == (256, 8 + 2)
    assert torch.allclose(got[:, :8], deep, atol=1e-6)
    assert torch.allclose(got[:, :8].norm(dim=1), torch.ones(256), atol=1e-5)


def test_deep_features_in_3d():
    model = tiny_ld(3)
    f = pixel_features(torch.rand(1, 8, 8, 8), "deep+position", model)
    assert f.shape == (512, 8 + 3)


def test_bad_names_and_a_missing_model_are_one_clear_error():
    with pytest.raises(ConfigError, match="unknown pixel feature depth; valid: position, intensity, embedding, deep"):
        parse_parts("depth+position")
    with pytest.raises(ConfigError, match="needs a pretrained model"):
        pixel_features(torch.rand(1, 4, 4), "deep")


def test_kmeans_on_intensity_separates_two_grey_levels_and_maps_back_to_the_image_size():
    from localdisc.tasks.pixel_features import PixelKMeans

    img = torch.zeros(1, 20, 30)
    img[:, 5:15, 8:20] = 1.0
    km = PixelKMeans("intensity", 2, size=(10, 15), seed=0)
    km.fit([km.features(img.numpy())])
    lab = km.predict(img.numpy())
    assert lab.shape == (20, 30)
    inside, outside = lab[7:13, 10:18], np.concatenate([lab[:3].ravel(), lab[:, :5].ravel()])  # away from the edges the resize blurs
    assert len(np.unique(inside)) == 1 and len(np.unique(outside)) == 1 and inside[0, 0] != outside[0]
    again = PixelKMeans("intensity", 2, size=(10, 15), seed=0)
    assert np.array_equal(again.fit([again.features(img.numpy())]).predict(img.numpy()), lab)
    assert np.array_equal(np.array(km.describe()["centers"]), km.kmeans.cluster_centers_)


def test_kmeans_refuses_one_cluster_and_model_features_without_a_model():
    from localdisc.tasks.pixel_features import PixelKMeans

    with pytest.raises(ConfigError, match="at least 2 clusters"):
        PixelKMeans("position", 1, size=(8, 8))
    with pytest.raises(ConfigError, match="need a pretrained model"):
        PixelKMeans("deep+position", 3, size=(8, 8))
    with pytest.raises(ConfigError, match="fit"):
        PixelKMeans("position", 2, size=(4, 4)).assign(np.zeros((16, 2), np.float32), (4, 4))


def test_fitting_image_by_image_keeps_at_most_max_pixels():
    from localdisc.tasks.pixel_features import PixelKMeans

    rng = np.random.default_rng(0)
    images = [rng.random((1, 16, 16)).astype(np.float32) for _ in range(5)]
    km = PixelKMeans("intensity+position", 3, size=(16, 16), seed=0, max_pixels=100)
    seen = []
    km.fit = lambda feats: seen.extend(feats) or km  # what reaches k-means
    km.fit_images(iter(images), len(images))
    assert len(seen) == 5 and all(f.shape == (20, 3) for f in seen)  # ceil(100 / 5) pixels of each image
