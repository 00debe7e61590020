"""Shape-guided Local Discrimination (docs/method.mdb, seed 002): discover one structure with
an unpaired shape prior.

LD (K=8 by default) plus a small mask discriminator D (:class:`MaskDiscriminator`) that tells
cluster channel 0 of the non-mixup views, a_0 (4B, 1, *s), from prior masks (vessel masks of
another dataset, or simulated ones). Generator and discriminator are trained by ONE optimizer
over ``model.parameters()``, so both GAN updates live in one loss:

    L_D   = BCE(D(priors), 1) + BCE(D(a_0.detach()), 0)        (trains D only: a_0 is detached)
    L_adv = adv_weight * BCE(D_frozen(a_0), 1)                  (trains the LD network only)

where D_frozen is D evaluated by ``torch.func.functional_call`` with detached parameters, so the
generator term can never push D toward "fake is real". Total = LD terms + L_D + L_adv.

What D judges (``disc_input``): priors are binary, a_0 is soft (sigmoid + L1 over K channels,
typically below 0.5 everywhere early on). Fed the soft a_0, D separates fake from real by the
VALUES alone within a few steps and its verdict says nothing about shape (measured: D loss ~0.01,
a_0 never crosses 0.5, Dice 0). The default "argmax" feeds D the binary map [argmax_k a_k = 0]
with a straight-through gradient to a_0 (forward: the hard map; backward: identity), so D can
only judge shape; "threshold" does the same with [a_0 > 0.5].

Priors are read once in :meth:`prepare` (a folder of 2D masks / 3D volumes, or
``simulate:KIND[:N]`` to draw them from :mod:`localdisc.data.shapes` at the images' own size),
resized to the training image size by nearest neighbour (as label masks are). Each step a random
subset is warped with the same random-resized-crop/flip/rotation distribution as the LD views,
so priors and a_0 share scale statistics; by nearest neighbour too when D judges hard maps, so
that priors stay binary like the maps they are compared with.

Prediction (:meth:`structure_probability`): a_0 (threshold it at 0.5), [argmax_k a_k = 0] with
``rule="argmax"``, or with ``rule="prototype"`` the region rule softmax_k( cos(v_p, r_k) / 0.2 )
channel 0, with r_k the image's region embeddings.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch.func import functional_call

from ..config import field
from ..data.datasets import resize_labels
from ..data.io import IMAGE_SUFFIXES, VOLUME_SUFFIXES, read_mask, suffix_of
from ..data.records import load_sample_image
from ..data.simulate import simulate
from ..errors import ConfigError, DataError
from ..losses import ld as L
from ..nets.discriminator import MaskDiscriminator
from . import augment
from .base import PrepareContext
from .ld.method import LDConfig, LocalDiscrimination


@dataclass
class ShapeLDConfig(LDConfig):
    num_clusters: int = field(8, "K: channels of the clustering head (channel 0 is shape-guided)")
    prior_masks: str = field("simulate:vessels:200", "unpaired prior masks: a folder of mask images/volumes, or simulate:KIND[:N] (KIND: vessels, retina, lungs, disc, tubes3d). "
                              "Guidance can only find the structure if the discriminator cannot tell its true masks from the priors: for fundus photographs use retina, not generic vessels")
    adv_weight: float = field(1.0, "weight of the generator term BCE(D(a_0), 1)")
    disc_weight: float = field(1.0, "weight of the discriminator loss (real priors vs detached a_0)")
    disc_input: str = field("argmax", "what the discriminator judges: argmax ([argmax_k a_k = 0]), threshold ([a_0 > 0.5]) or soft (a_0 itself; D then tells fake from real by its soft values); hard maps pass gradients straight through to a_0")
    disc_lr_scale: float = field(5.0, "discriminator learning rate as a multiple of --lr (runtime weight scaling; the loop has one optimizer). Above 1 so that D leaves its chance-level plateau while the generator moves")
    disc_width: int = field(32, "discriminator width of the first layer")
    disc_layers: int = field(4, "discriminator stride-2 conv layers (each doubles the patch it judges: 4 sees ~46 px, enough for vessels; use 5 or more for organs such as lungs at 128^2)")
    prior_batch: int = field(0, "prior masks per step (0 = as many as a_0 maps, i.e. 4B)")
    prior_seed: int = field(0, "seed of simulated priors (simulate:KIND)")

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.disc_input not in DISC_INPUTS:
            raise ConfigError(f"disc_input must be one of {', '.join(DISC_INPUTS)}, got {self.disc_input!r}")


DISC_INPUTS = ("argmax", "threshold", "soft")
RULES = ("threshold", "argmax", "prototype")


def discriminator_input(a: torch.Tensor, mode: str) -> torch.Tensor:
    """What D judges of the assignments a (n, K, *s): (n, 1, *s).

    "soft": a_0; "argmax": [argmax_k a_k = 0]; "threshold": [a_0 > 0.5]. The hard maps carry a
    straight-through gradient: their value is binary, their gradient w.r.t. a_0 the identity."""
    a0 = a[:, :1]
    if mode == "soft":
        return a0
    if mode == "argmax":
        hard = (a.argmax(dim=1, keepdim=True) == 0).to(a0.dtype)
    elif mode == "threshold":
        hard = (a0 > 0.5).to(a0.dtype)
    else:
        raise ConfigError(f"disc_input must be one of {', '.join(DISC_INPUTS)}, got {mode!r}")
    return hard + a0 - a0.detach()


def load_prior_masks(spec: str, size: tuple[int, ...], seed: int = 0, simulate_size: tuple[int, ...] | None = None) -> torch.Tensor:
    """(N, 1, *size) binary float masks from a folder or ``simulate:KIND[:N]``, resized by nearest neighbour.

    Simulated masks are drawn at ``simulate_size`` (default ``size``): pass the images' own size,
    so that priors and images go through the same resampling (benchmarks/prior_gap.py measured
    fundus priors drawn at the training size as distinguishable from the true vessels, and
    priors drawn at the images' size and resized as not)."""
    if spec.startswith("simulate:"):
        parts = spec.split(":")
        kind, n = parts[1], int(parts[2]) if len(parts) > 2 else 200
        masks = [resize_labels(torch.from_numpy((m > 0).astype("float32")), size) for m in simulate(kind, n, simulate_size or size, seed=seed)]
    else:
        folder = Path(spec)
        if not folder.is_dir():
            raise DataError(f"{spec}: prior mask folder not found (or use simulate:vessels)")
        files = sorted(p for p in folder.iterdir() if suffix_of(p) in IMAGE_SUFFIXES + VOLUME_SUFFIXES or p.name.lower().endswith(".gz"))
        if not files:
            raise DataError(f"{folder}: holds no mask images")
        masks = []
        for f in files:
            m = torch.from_numpy(read_mask(f, values="binary").astype("float32"))
            if m.dim() != len(size):
                raise DataError(f"{f}: prior mask is {m.dim()}-D but the images are {len(size)}-D")
            # nearest neighbour, as the dataset resizes label masks: an antialiased prior would have
            # fractional edges that tell it from the binary map D judges by value alone
            masks.append(resize_labels(m, size))
    return torch.stack(masks)[:, None].clamp(0, 1)


def adversarial_terms(a0: torch.Tensor, priors: torch.Tensor, disc: torch.nn.Module) -> tuple[torch.Tensor, torch.Tensor]:
    """(L_D, L_G) for fake maps a0 (n, 1, *s) and real priors (m, 1, *s).

    L_D = BCE(D(priors), 1) + BCE(D(a0.detach()), 0) reaches only D's parameters;
    L_G = BCE(D_detached(a0), 1) reaches only a0 (D runs with detached parameters).
    """
    real = disc(priors)
    fake = disc(a0.detach())
    d_loss = F.binary_cross_entropy_with_logits(real, torch.ones_like(real)) + F.binary_cross_entropy_with_logits(fake, torch.zeros_like(fake))
    frozen = {k: p.detach() for k, p in disc.named_parameters()}
    frozen.update(dict(disc.named_buffers()))
    g = functional_call(disc, frozen, (a0,))
    return d_loss, F.binary_cross_entropy_with_logits(g, torch.ones_like(g))


MAX_SIMULATE_FACTOR = 4  # simulate priors at most this many times the training size per axis


def _native_size(dataset, fallback: tuple[int, ...]) -> tuple[int, ...]:
    """Where to simulate priors: the first image's stored size (before the training resize),
    scaled down, aspect kept, to at most MAX_SIMULATE_FACTOR x ``fallback`` (the training size)
    per axis. The resampling step is what makes priors and masks alike (benchmarks/prior_gap.py);
    drawing 200 masks at a 2000^2 radiograph's full size would only cost minutes."""
    samples = getattr(dataset, "samples", None)
    if not samples:
        return fallback

    native = tuple(load_sample_image(samples[0]).shape[1:])
    if len(native) != len(fallback):
        return fallback
    shrink = min(1.0, min(MAX_SIMULATE_FACTOR * f / n for n, f in zip(native, fallback)))
    return tuple(max(1, round(n * shrink)) for n in native)


class ShapeGuidedLD(LocalDiscrimination):
    name = "ld-shape"
    Config = ShapeLDConfig

    def __init__(self, backbone, cfg: ShapeLDConfig | None = None):
        cfg = cfg or ShapeLDConfig(stage="2")
        super().__init__(backbone, cfg)
        d = backbone.config.spatial_dims
        self.discriminator = MaskDiscriminator(d, 1, cfg.disc_width, cfg.disc_layers, lr_scale=cfg.disc_lr_scale)
        self.priors: torch.Tensor | None = None  # (N, 1, *image_size); not saved with the weights

    def prepare(self, ctx: PrepareContext) -> None:
        if self.priors is not None or self.cluster_head is None:  # stage 1 is plain LD
            return
        size = tuple(ctx.dataset[0]["image"].shape[1:])
        self.priors = load_prior_masks(self.cfg.prior_masks, size, self.cfg.prior_seed, _native_size(ctx.dataset, size)).to(ctx.device)

    def sample_priors(self, n: int, size: tuple[int, ...]) -> torch.Tensor:
        """n random priors warped by the views' random geometry to ``size``: (n, 1, *size)."""
        if self.priors is None:
            raise ConfigError("ld-shape: prior masks are not loaded (prepare() was not called)")
        idx = torch.randint(len(self.priors), (n,), device=self.priors.device)
        theta = augment.random_affine(n, len(size), self.cfg.crop_scale, rotate_degrees=self.cfg.rotate_degrees, flip=self.cfg.flip, device=self.priors.device)
        # D judges hard maps (argmax/threshold) against these: a bilinear warp would give the priors
        # fractional edges (88% of thin-vessel pixels) and D would tell real from fake by value alone
        mode = "bilinear" if self.cfg.disc_input == "soft" else "nearest"
        return augment.warp(self.priors[idx], augment.affine_grid(theta, size), mode=mode, padding_mode="zeros")

    def loss_terms(self, outputs: dict[str, Any]) -> dict[str, torch.Tensor]:
        terms = super().loss_terms(outputs)
        a = outputs.get("assign")
        if a is None:  # stage 1 has no clustering head: plain LD
            return terms
        a0 = discriminator_input(a[: 4 * outputs["B"]].float(), self.cfg.disc_input)
        priors = self.sample_priors(self.cfg.prior_batch or a0.shape[0], tuple(a0.shape[2:]))
        d_loss, g_loss = adversarial_terms(a0, priors, self.discriminator)
        terms["disc"] = self.cfg.disc_weight * d_loss
        terms["adv"] = self.cfg.adv_weight * g_loss
        return terms

    @torch.no_grad()
    def structure_probability(self, images: torch.Tensor, rule: str = "threshold") -> torch.Tensor:
        """images (B, C, *S) -> probability of the guided structure (B, *S).

        rule "threshold": a_0; "argmax": [argmax_k a_k = 0] (0 or 1);
        "prototype": softmax_k(cos(v_p, r_k) / tau_ld)[0]."""
        trunk = self.backbone.forward_features(images).trunk
        a = self.cluster_head(trunk)
        if rule == "threshold":
            return a[:, 0]
        if rule == "argmax":
            return (a.argmax(dim=1) == 0).to(a.dtype)
        if rule == "prototype":
            v = self.embed_head(trunk)
            r = L.region_embeddings(a, v)  # (B, K, D)
            logits = torch.einsum("bkd,bd...->bk...", r, v) / self.cfg.tau_ld
            return logits.softmax(dim=1)[:, 0]
        raise ConfigError(f"unknown prediction rule {rule!r}; valid: {', '.join(RULES)}")
