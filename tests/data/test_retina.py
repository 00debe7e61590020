import numpy as np
import pytest
from scipy import ndimage

from localdisc.data import retina, simulate, synthetic
from localdisc.errors import ConfigError


def test_retina_prior_kind_is_the_synthetic_fundus_vasculature():
    """Prior i of seed s and the vessels of a synthetic fundus with the same generator state
    are the same drawing: the prior kind and the photographs share one anatomy model."""
    prior = simulate.simulate("retina", 1, (96, 96), seed=5)[0]
    photo = synthetic.make_fundus((96, 96), np.random.default_rng([5, 0]))
    assert prior.dtype == bool and np.array_equal(prior, photo["vessels"])


def test_retina_vessels_stay_in_the_fov_leave_the_disc_and_spare_the_fovea():
    for seed in range(4):
        rng = np.random.default_rng(seed)
        lay = retina.fundus_layout((128, 128), rng)
        vessels, contrast = retina.retinal_vessels((128, 128), rng, lay)
        assert not (vessels & ~lay["fov"]).any()
        assert 0.03 < vessels[lay["fov"]].mean() < 0.3
        assert (contrast[vessels] > 0).all() and contrast.max() <= 0.62
        # the largest connected vessel component touches the optic disc
        labels, n = ndimage.label(vessels)
        largest = np.argmax(np.bincount(labels.ravel())[1:]) + 1
        assert (labels == largest)[ndimage.binary_dilation(lay["disc"], iterations=2)].any()
        # foveal avascular zone: nothing within 0.3 disc diameters of the fovea center
        yy, xx = np.mgrid[:128, :128]
        near = (yy - lay["fovea_c"][0]) ** 2 + (xx - lay["fovea_c"][1]) ** 2 < (0.3 * lay["dd"]) ** 2
        assert not vessels[near].any()


def test_retina_kind_needs_2d():
    with pytest.raises(ConfigError, match="retina"):
        simulate.simulate("retina", 1, (16, 16, 16))
