"""SimCLR-style global instance discrimination (docs/method.md, Baselines).

One step: two random views per image (``views.py``) -> U-Net encoder only -> global average of
the deepest map h (B, C_last) -> MLP projection z = g(h) -> NT-Xent (tau = 0.1) over the 2B
views, keys all-gathered under DDP. Only the encoder is trained; transfer the encoder.

Normalization and DDP: the projection head's norm follows the backbone's ``norm`` (--norm).
With BatchNorm each process normalizes only its own 2b views; with b = 2 images per process
BN maps a process's two images to near-opposite codes, so codes of OTHER processes' images
(gathered keys, i.e. negatives) become as close to an anchor as its positive and the loss
rises far above one process's (about 3.6-4 vs 2.2 at tau 0.1, 2 x 2 images, before any
update). The NT-Xent and gather themselves are exact (tests/train/test_distributed.py). For
tiny per-process batches use SyncBatchNorm (CUDA DDP converts BN automatically) or
``--norm group``, which makes 2-process runs equal to 1-process runs.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ...config import field
from ...errors import ConfigError, TrainingError
from ...losses.ntxent import nt_xent
from ..base import PrepareContext, PretrainMethod
from .head import ProjectionHead, encode, pooled
from .views import two_views


@dataclass
class SimCLRConfig:
    tau: float = field(0.1, "NT-Xent temperature")
    proj_hidden: int = field(256, "hidden width of the MLP projection head")
    proj_dim: int = field(64, "output size of the projection head (the contrasted vector)")
    crop_size: tuple[int, ...] = field((), "view size (H W or D H W); empty = the image size")
    crop_scale: tuple[float, ...] = field((0.3, 1.0), "random resized crop: min and max fraction of the image area")
    rotate_degrees: float = field(15.0, "random rotation range (+-degrees; 3D: about a random plane)")
    flip: bool = field(True, "random flips")
    brightness: float = field(0.2, "photometric jitter: additive brightness range")
    contrast: float = field(0.2, "photometric jitter: contrast factor range 1 +- this")
    gamma: float = field(0.2, "photometric jitter: gamma = exp(U(-this, this))")
    saturation: float = field(0.4, "colour jitter (RGB images only): saturation factor range 1 +- this")
    hue: float = field(0.02, "colour jitter (RGB images only): hue shift range +- this fraction of a turn")
    grayscale_prob: float = field(0.2, "colour jitter (RGB images only): probability of turning a view gray")
    noise: float = field(0.03, "photometric jitter: max std of additive Gaussian noise")
    blur_prob: float = field(0.5, "photometric jitter: probability of a Gaussian blur")
    blur_sigma: float = field(1.0, "photometric jitter: max blur sigma (pixels)")

    def __post_init__(self) -> None:
        if self.tau <= 0:
            raise ConfigError(f"tau must be > 0, got {self.tau}")
        if len(self.crop_scale) != 2 or not 0 < self.crop_scale[0] <= self.crop_scale[1] <= 1:
            raise ConfigError(f"crop_scale must be two numbers 0 < lo <= hi <= 1, got {self.crop_scale}")


class SimCLR(PretrainMethod):
    name = "simclr"
    min_batch = 2  # negatives come from the other images of the batch
    Config = SimCLRConfig

    def __init__(self, backbone, cfg: SimCLRConfig | None = None):
        super().__init__(backbone, cfg or SimCLRConfig())
        self.proj_head = ProjectionHead(backbone.config.encoder_channels[-1], self.cfg.proj_hidden, self.cfg.proj_dim, backbone.config.norm)
        self._gather = None

    def prepare(self, ctx: PrepareContext) -> None:
        self._gather = ctx.gather

    def project(self, views: torch.Tensor) -> torch.Tensor:
        """(2n, C, *S) -> (2n, proj_dim) projections (unnormalized)."""
        return self.proj_head(pooled(encode(self.backbone, views)[-1]))

    def embed(self, images: torch.Tensor) -> torch.Tensor:
        """Global representation h (B, C_last) used downstream (no projection head)."""
        return pooled(encode(self.backbone, images)[-1])

    def _views_and_projections(self, images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        if images.shape[0] < 2:
            raise TrainingError(f"{self.name} contrasts images within a batch and needs at least 2 images per process; got {images.shape[0]} (raise --batch-size)")
        v1, v2 = two_views(images, self.cfg)
        z = self.project(torch.cat([v1, v2]))
        return z[: images.shape[0]], z[images.shape[0] :]

    def training_step(self, images: torch.Tensor) -> tuple[torch.Tensor, dict[str, float]]:
        z1, z2 = self._views_and_projections(images)
        loss = nt_xent(z1, z2, self.cfg.tau, gather=self._gather)
        return loss, {"ntxent": float(loss.detach()), "pos_cos": _pos_cos(z1, z2)}


def _pos_cos(z1: torch.Tensor, z2: torch.Tensor) -> float:
    """Mean cosine of the positive pairs (a quick health signal: rises as views align)."""
    return float(torch.nn.functional.cosine_similarity(z1.detach().float(), z2.detach().float(), dim=1).mean())


__all__ = ["SimCLR", "SimCLRConfig"]
