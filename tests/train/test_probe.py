"""Pretraining probe: held-out images only, a perfect feature gives Dice 1, noise does not,
and the pretraining loop logs it."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from localdisc.train.probe import ProbeSet, probe_dice, probe_split


def _labeled_folder(root, n=10):
    rng = np.random.default_rng(0)
    for sub in ("images", "masks"):
        (root / sub).mkdir(parents=True)
    rows = ["id,image,mask,split"]
    for i in range(n):
        mask = np.zeros((24, 24), np.uint8)
        r, c = rng.integers(4, 16, 2)
        mask[r : r + 8, c : c + 8] = 255
        img = (rng.random((24, 24)) * 80 + (mask > 0) * 120).astype(np.uint8)
        Image.fromarray(img).save(root / "images" / f"i{i}.png")
        Image.fromarray(mask).save(root / "masks" / f"i{i}.png")
        rows.append(f"i{i},images/i{i}.png,masks/i{i}.png,{'test' if i >= 7 else 'train'}")
    (root / "manifest.csv").write_text("\n".join(rows) + "\n")
    return root / "manifest.csv"


def test_probe_fits_and_scores_disjoint_training_images(tmp_path):
    spec = str(_labeled_folder(tmp_path))
    fit, score = probe_split(spec, 2, 10, seed=1)
    fit_ids, score_ids = {s.id for s in fit}, {s.id for s in score}
    assert len(fit_ids) == 2 and len(score_ids) == 5 and not fit_ids & score_ids
    assert all(s.split == "train" for s in fit + score)  # i7..i9 are test: never used
    assert not (fit_ids | score_ids) & {"i7", "i8", "i9"}


class _Features(torch.nn.Module):
    """A 'model' whose pixel embedding is given: the probe must read it, nothing else."""

    def __init__(self, fn):
        super().__init__()
        self.fn = fn

    def embed(self, x):
        return self.fn(x)


def _set(n_fit=2, n_score=4, size=16):
    g = torch.Generator().manual_seed(0)
    masks = torch.zeros(n_fit + n_score, size, size, dtype=torch.long)
    for i in range(n_fit + n_score):
        r, c = torch.randint(0, size - 6, (2,), generator=g).tolist()
        masks[i, r : r + 6, c : c + 6] = 1
    images = masks[:, None].float()  # the image IS the mask: a perfect feature
    return ProbeSet(images[:n_fit], masks[:n_fit], images[n_fit:], masks[n_fit:], [], [], 2)


def test_perfect_feature_scores_one_and_noise_does_not():
    probe = _set()
    perfect = _Features(lambda x: torch.cat([x, 1 - x], 1))
    assert probe_dice(perfect, probe, torch.device("cpu")) == pytest.approx(1.0)
    noise = _Features(lambda x: torch.rand(x.shape[0], 4, *x.shape[2:], generator=torch.Generator().manual_seed(1)))
    assert probe_dice(noise, probe, torch.device("cpu")) < 0.6


def test_pretraining_logs_the_probe(tmp_path):
    from localdisc.train.pretrain import PretrainConfig, pretrain

    spec = str(_labeled_folder(tmp_path / "d"))
    run = pretrain(PretrainConfig(data=spec, method="genesis", out=str(tmp_path / "run"), steps=4, batch_size=2, image_size=(24, 24),
                                  encoder_channels=(4, 8), decoder_channels=(4,), probe_data=spec, probe_labels=2, probe_images=3,
                                  probe_every=2, log_every=100, picture_every=0, checkpoint_every=100))
    rows = (run / "metrics.csv").read_text().splitlines()
    header = rows[0].split(",")
    assert "probe_dice" in header and "loss" in header
    probed = [r.split(",") for r in rows[1:]]
    assert [r[0] for r in probed] == ["2", "4"] and all(0 <= float(r[header.index("probe_dice")]) <= 1 for r in probed)
    assert (run / "pictures" / "probe_dice.png").is_file() and (run / "probe.json").is_file()
