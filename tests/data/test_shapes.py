import numpy as np
import pytest
from PIL import Image

from localdisc.data import shapes, simulate
from localdisc.errors import ConfigError


def _tree(seed=0, shape=(96, 96), **kw):
    return shapes.vessel_tree(shape, np.random.default_rng(seed), **kw)


def test_vessel_tree_deterministic_and_typed():
    m1, c1 = _tree(3)
    m2, c2 = _tree(3)
    m3, _ = _tree(4)
    assert m1.dtype == bool and m1.shape == (96, 96) and c1.shape == (96, 96)
    assert np.array_equal(m1, m2) and np.array_equal(c1, c2)
    assert not np.array_equal(m1, m3)
    assert 0 < m1.mean() < 0.5
    assert (c1 & ~m1).sum() == 0  # centerline lies in the mask


def test_thickness_knob_adds_foreground():
    # same seed: the same random draws, only the radii change
    thin = np.mean([_tree(s, thickness=(1.0, 2.0))[0].mean() for s in range(3)])
    thick = np.mean([_tree(s, thickness=(3.0, 8.0))[0].mean() for s in range(3)])
    assert thick > 1.8 * thin


def test_depth_knob_adds_branches():
    rng = np.random.default_rng
    roots = [(np.array([48.0, 48.0]), np.array([1.0, 0.0]))]
    shallow = shapes.grow_tree((95, 95), rng(0), roots, depth=2)
    deep = shapes.grow_tree((95, 95), rng(0), roots, depth=5)
    assert len(shallow) <= 3 < len(deep)
    assert max(b.level for b in deep) > max(b.level for b in shallow)


def test_thickness_tapers_with_depth():
    roots = [(np.array([10.0, 48.0]), np.array([1.0, 0.0]))]
    br = shapes.grow_tree((500, 500), np.random.default_rng(1), roots, depth=4, thickness=(0.5, 6.0), taper=0.7, asymmetry=0.0)
    by_level = {}
    for b in br:
        by_level.setdefault(b.level, []).append(b.radii[0])
    means = [np.mean(by_level[k]) for k in sorted(by_level)]
    assert all(a > b for a, b in zip(means, means[1:]))


def test_render_matches_brute_force_distance():
    b = shapes.Branch(np.array([[5.0, 5.0], [20.0, 25.0], [30.0, 10.0]]), np.array([3.0, 2.0, 1.0]), 0)
    sdf, rad = shapes.render_branches((40, 40), [b])
    ys, xs = np.mgrid[0:40, 0:40]
    ref = np.full((40, 40), np.inf)
    for i in range(2):  # float64 loop reference: distance to each capsule minus its interpolated radius
        a, c = b.points[i], b.points[i + 1]
        for y in range(40):
            for x in range(40):
                p = np.array([y, x], float)
                t = np.clip((p - a) @ (c - a) / ((c - a) @ (c - a)), 0, 1)
                ref[y, x] = min(ref[y, x], np.linalg.norm(p - a - t * (c - a)) - (b.radii[i] + t * (b.radii[i + 1] - b.radii[i])))
    near = np.isfinite(sdf)
    assert near[ref <= 0].all()
    np.testing.assert_allclose(sdf[near], ref[near], atol=1e-4)
    assert rad[ref <= 0].min() >= 1.0 and rad[ref <= 0].max() <= 3.0


def test_vessel_tree_3d_and_spacing():
    m, c = shapes.vessel_tree_3d((24, 32, 32), np.random.default_rng(0), spacing=(2.0, 1.0, 1.0), thickness=(1.5, 4.0))
    assert m.shape == (24, 32, 32) and m.dtype == bool and m.any() and (c & ~m).sum() == 0
    with pytest.raises(ConfigError):
        shapes.vessel_tree_3d((32, 32), np.random.default_rng(0))


def test_lung_fields_labels_and_sides():
    lab = shapes.lung_fields((96, 96), np.random.default_rng(0))
    assert lab.dtype == np.int64 and set(np.unique(lab)) == {0, 1, 2}
    cols = np.arange(96)
    # the patient's right lung (2) appears on the image left, the left lung (1) on the right
    assert cols[(lab == 2).any(0)].mean() < 48 < cols[(lab == 1).any(0)].mean()
    assert 0.15 < (lab > 0).mean() < 0.6
    assert not np.array_equal(lab, shapes.lung_fields((96, 96), np.random.default_rng(1)))


def test_disc_ellipse_center_and_radius():
    m = shapes.disc_ellipse((80, 80), np.random.default_rng(0), center=(30, 50), radius=(0.1, 0.1), irregularity=0.0)
    assert m[30, 50] and not m[0, 0]
    area = m.sum()
    assert abs(area - np.pi * 8**2) / (np.pi * 8**2) < 0.1  # elongation keeps the area of the mean radius


def test_simulate_prefix_property_and_errors():
    a = simulate.simulate("vessels", 3, (48, 48), seed=5)
    b = simulate.simulate("vessels", 2, (48, 48), seed=5)
    assert all(np.array_equal(x, y) for x, y in zip(a, b))
    assert simulate.simulate("lungs", 1, (48, 48))[0].max() == 2
    with pytest.raises(ConfigError):
        simulate.simulate("bananas", 1, (48, 48))
    with pytest.raises(ConfigError):
        simulate.simulate("vessels", 1, (8, 8, 8))


def test_write_priors_png_and_nifti(tmp_path):
    paths = simulate.write_priors("disc", 2, (40, 40), tmp_path / "p", seed=1)
    arr = np.asarray(Image.open(paths[0]))
    assert arr.dtype == np.uint8 and set(np.unique(arr)) == {0, 255}
    from localdisc.data.io import read_mask, read_spacing

    vols = simulate.write_priors("tubes3d", 1, (16, 24, 24), tmp_path / "t", seed=0, spacing=(2.0, 1.0, 1.0))
    m = read_mask(vols[0])
    assert m.shape == (16, 24, 24) and m.max() == 1
    assert read_spacing(vols[0]) == (2.0, 1.0, 1.0)
    again = simulate.write_priors("tubes3d", 1, (16, 24, 24), tmp_path / "t2", seed=0, spacing=(2.0, 1.0, 1.0))
    assert vols[0].read_bytes() == again[0].read_bytes()
