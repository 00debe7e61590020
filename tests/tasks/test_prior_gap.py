"""The prior gap (tasks/prior_gap.py): a discriminator tells different mask sets apart, not equal ones."""

from __future__ import annotations

import torch

from localdisc.data.sources import resolve_source
from localdisc.tasks.prior_gap import discriminator_gap, gap_row, prior_sets, simulated_priors, target_masks


def test_true_masks_are_the_train_split_at_the_training_size():
    masks = target_masks("synthetic-fundus:6:48x40", (32, 24))
    assert masks.shape[1:] == (1, 32, 24) and len(masks) == sum(s.split == "train" for s in resolve_source("synthetic-fundus:6:48x40"))
    assert set(masks.unique().tolist()) == {0.0, 1.0} and 0 < masks.mean() < 0.5


def test_priors_are_simulated_then_resized_like_labels():
    p = simulated_priors("vessels", 3, (24, 24), (48, 48))
    assert p.shape == (3, 1, 24, 24) and set(p.unique().tolist()) == {0.0, 1.0} and 0 < p.mean() < 0.5  # thin vessels on background
    assert torch.equal(p, simulated_priors("vessels", 3, (24, 24), (48, 48)))  # seeded
    sets = prior_sets(2, 2, (32, 32), (48, 48))
    assert len(sets) == 4 and all(s.shape == (2, 1, 32, 32) for s in sets.values())
    assert "simulate:retina, at the images' 48x48, resized" in sets and "simulate:vessels (n_roots=2), at 32x32" in sets


def _disc_sets():
    yy, xx = torch.meshgrid(torch.arange(32), torch.arange(32), indexing="ij")
    stripes = ((xx // 4) % 2 == 0).float()[None, None].repeat(8, 1, 1, 1)  # thin vertical stripes
    blobs = (((yy - 16) ** 2 + (xx - 16) ** 2) < 100).float()[None, None].repeat(8, 1, 1, 1)  # one round blob
    return stripes, blobs


def test_the_discriminator_tells_stripes_from_blobs_but_not_a_set_from_itself():
    stripes, blobs = _disc_sets()
    apart = discriminator_gap(stripes, blobs, steps=20, last=5, batch=4)
    same = discriminator_gap(stripes, stripes, steps=20, last=5, batch=4)
    assert apart["patch_accuracy"] > 0.9 and same["patch_accuracy"] < 0.7 and apart["d_loss"] < same["d_loss"]
    row = gap_row(stripes, blobs, 2, steps=3, last=2, batch=2)
    assert len(row["patch_accuracy_per_seed"]) == 2 and row["foreground_fraction"] == float(stripes.mean())
