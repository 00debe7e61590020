"""How far is a prior set from the real structure? A discriminator's answer (benchmarks/prior_gap.py).

Shape-guided discovery (ld-shape) converges to the true structure only if the true masks are
indistinguishable from the priors to its discriminator D: otherwise the GAN's equilibrium is not
the structure, whatever the training length. :func:`discriminator_gap` trains the ld-shape
discriminator (same architecture and learning-rate scale) to tell a prior set ("real", label 1)
from the TRUE masks of the target images ("fake", label 0), both warped by the views' random
geometry, with the loss

    L = BCE(D(warp(prior)), 1) + BCE(D(warp(true)), 0)   (per patch, averaged),

and reports D's patch accuracy 1/2 (P[D(prior) > 0] + P[D(true) < 0]) over the last steps:
0.5 means D cannot tell them apart. The true masks are used only here, to measure the gap.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F

from ..data.datasets import ImageDataset, resize_labels, stack_items
from ..data.simulate import simulate
from ..data.sources import resolve_source
from ..methods import augment
from ..methods.ld_shape import ShapeLDConfig, load_prior_masks
from ..nets.discriminator import MaskDiscriminator


def target_masks(data: str, size: Sequence[int]) -> torch.Tensor:
    """(N, 1, H, W) float {0, 1}: the true masks of the TRAIN images of ``data`` at ``size``."""
    size = tuple(size)
    samples = [s for s in resolve_source(data) if s.split == "train"]
    ds = ImageDataset(samples, size, None, with_masks=True)
    return (stack_items([ds[i] for i in range(len(ds))])["mask"] > 0).float().reshape(len(ds), 1, *size)


def simulated_priors(kind: str, n: int, size: Sequence[int], sim_size: Sequence[int], **knobs) -> torch.Tensor:
    """(n, 1, H, W): masks simulated at ``sim_size`` (seed 1), resized to ``size`` like label masks (nearest)."""
    masks = simulate(kind, n, tuple(sim_size), seed=1, **knobs)
    return torch.stack([resize_labels(torch.from_numpy((m > 0).astype("float32")), tuple(size)) for m in masks])[:, None]


def wxh(size: Sequence[int]) -> str:
    return "x".join(str(s) for s in size)


def prior_sets(priors: int, roots: int, size: Sequence[int], native: Sequence[int], folders: Sequence[str] = ()) -> dict[str, torch.Tensor]:
    """The compared prior sets at the training ``size``: generic vessel trees (with ``roots``
    trees per mask, and with the simulator's defaults), whole-fundus vasculature simulated at
    ``size`` and at the images' ``native`` size then resized, and folders of masks."""
    sets = {
        f"simulate:vessels (n_roots={roots}), at {wxh(size)}": simulated_priors("vessels", priors, size, size, n_roots=roots),
        f"simulate:vessels (defaults), at {wxh(size)}": simulated_priors("vessels", priors, size, size),
        f"simulate:retina, at {wxh(size)}": simulated_priors("retina", priors, size, size),
        f"simulate:retina, at the images' {wxh(native)}, resized": simulated_priors("retina", priors, size, native),
    }
    for folder in folders:
        sets[folder] = load_prior_masks(folder, tuple(size))
    return sets


def discriminator_gap(real: torch.Tensor, fake: torch.Tensor, steps: int = 400, last: int = 50, batch: int = 16, lr: float = 1e-3,
                      seed: int = 0) -> dict[str, float]:
    """Train D (the ld-shape defaults) on ``real`` (N, 1, H, W) vs ``fake`` (M, 1, H, W) for
    ``steps`` Adam steps at ``lr``; D's patch accuracy and loss averaged over the ``last`` steps."""
    torch.manual_seed(seed)
    cfg = ShapeLDConfig()
    disc = MaskDiscriminator(2, 1, cfg.disc_width, cfg.disc_layers, lr_scale=cfg.disc_lr_scale)
    opt = torch.optim.Adam(disc.parameters(), lr=lr)
    size = tuple(real.shape[2:])

    def views(x):
        theta = augment.random_affine(x.shape[0], 2, cfg.crop_scale, rotate_degrees=cfg.rotate_degrees, flip=cfg.flip)
        return augment.warp(x, augment.affine_grid(theta, size), padding_mode="zeros")

    accs, losses = [], []
    for step in range(steps):
        r = views(real[torch.randint(len(real), (batch,))])
        f = views(fake[torch.randint(len(fake), (batch,))])
        lr_, lf = disc(r), disc(f)
        loss = F.binary_cross_entropy_with_logits(lr_, torch.ones_like(lr_)) + F.binary_cross_entropy_with_logits(lf, torch.zeros_like(lf))
        opt.zero_grad()
        loss.backward()
        opt.step()
        if step >= steps - last:
            accs.append(0.5 * float((lr_ > 0).float().mean() + (lf < 0).float().mean()))
            losses.append(float(loss.detach()))
    return {"patch_accuracy": float(np.mean(accs)), "d_loss": float(np.mean(losses))}


def gap_row(priors: torch.Tensor, truth: torch.Tensor, seeds: int, **train) -> dict[str, float | list[float]]:
    """:func:`discriminator_gap` repeated with seeds 0..seeds-1: means, per-seed accuracy, and the priors' foreground fraction."""
    runs = [discriminator_gap(priors, truth, seed=seed, **train) for seed in range(seeds)]
    return {"patch_accuracy": float(np.mean([r["patch_accuracy"] for r in runs])), "patch_accuracy_per_seed": [r["patch_accuracy"] for r in runs],
            "d_loss": float(np.mean([r["d_loss"] for r in runs])), "foreground_fraction": float(priors.mean())}
