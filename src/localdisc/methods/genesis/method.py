"""Restoration pretraining in the spirit of Models Genesis (docs/method.md, Baselines).

One step: a random crop (shared by input and target) -> Models-Genesis distortions
(``distortions.py``) -> U-Net trunk -> 1x1 conv + sigmoid -> restored image; loss = MSE to the
undistorted crop (``losses/restoration.py``). Encoder and decoder are both trained.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from ...config import field
from ...errors import ConfigError
from ...losses.restoration import restoration_loss
from ...nets import conv_nd
from ..base import PretrainMethod
from ..simclr.views import geometry, view_size
from .distortions import distort


@dataclass
class GenesisConfig:
    shuffle_prob: float = field(0.5, "probability of local pixel shuffling per image")
    shuffle_window: int = field(4, "side (pixels/voxels) of the local shuffling windows")
    shuffle_fraction: float = field(0.5, "fraction of windows whose pixels are shuffled")
    nonlinear_prob: float = field(0.9, "probability of the Bezier intensity transform per image")
    paint_prob: float = field(0.9, "probability of in- or out-painting per image")
    inpaint_rate: float = field(0.2, "share of painting that is in-painting (the rest is out-painting)")
    crop_size: tuple[int, ...] = field((), "crop size (H W or D H W) cut before distortion; empty = the image size")
    crop_scale: tuple[float, ...] = field((0.5, 1.0), "random resized crop: min and max fraction of the image area")
    rotate_degrees: float = field(0.0, "random rotation of the crop (+-degrees)")
    flip: bool = field(True, "random flips of the crop")

    def __post_init__(self) -> None:
        for name in ("shuffle_prob", "shuffle_fraction", "nonlinear_prob", "paint_prob", "inpaint_rate"):
            if not 0 <= getattr(self, name) <= 1:
                raise ConfigError(f"{name} must be in [0, 1], got {getattr(self, name)}")
        if self.shuffle_window < 1:
            raise ConfigError(f"shuffle_window must be >= 1, got {self.shuffle_window}")
        if len(self.crop_scale) != 2 or not 0 < self.crop_scale[0] <= self.crop_scale[1] <= 1:
            raise ConfigError(f"crop_scale must be two numbers 0 < lo <= hi <= 1, got {self.crop_scale}")


class Genesis(PretrainMethod):
    name = "genesis"
    images_per_sample = 1  # network inputs per image in one step
    Config = GenesisConfig

    def __init__(self, backbone, cfg: GenesisConfig | None = None):
        super().__init__(backbone, cfg or GenesisConfig())
        c = backbone.config
        self.restore_head = conv_nd(c.spatial_dims, c.trunk_channels, c.in_channels, 1)

    def distort(self, x: torch.Tensor, generator=None) -> torch.Tensor:
        c = self.cfg
        return distort(x, c.shuffle_prob, c.nonlinear_prob, c.paint_prob, c.inpaint_rate, c.shuffle_window, c.shuffle_fraction, generator)

    def restore(self, distorted: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(self.restore_head(self.backbone(distorted)))

    def training_step(self, images: torch.Tensor) -> tuple[torch.Tensor, dict[str, float]]:
        target = geometry(images, self.cfg, view_size(images, self.cfg.crop_size)).clamp(0, 1)
        pred = self.restore(self.distort(target))
        loss = restoration_loss(pred, target)
        return loss, {"mse": float(loss.detach())}

    def save_pictures(self, images: torch.Tensor, folder: Path) -> None:
        """original | distorted | restored for a few images (middle slice in 3D)."""
        import matplotlib  # deferred: heavy optional dependency, loaded only when used

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt  # deferred: heavy optional dependency, loaded only when used

        g = torch.Generator(device=images.device).manual_seed(0)
        distorted = self.distort(images, g)
        restored = self.restore(distorted)
        rows = [images, distorted, restored]
        n = images.shape[0]
        fig, axes = plt.subplots(3, n, figsize=(2 * n, 6), squeeze=False)
        for r, batch in enumerate(rows):
            for i in range(n):
                axes[r, i].imshow(_show(batch[i]), cmap="gray", vmin=0, vmax=1)
                axes[r, i].axis("off")
            axes[r, 0].set_title(["original", "distorted", "restored"][r], fontsize=8, loc="left")
        folder.mkdir(parents=True, exist_ok=True)
        fig.savefig(folder / "genesis_restoration.png", dpi=80, bbox_inches="tight")
        plt.close(fig)


def _show(img: torch.Tensor):
    """(C, *S) -> 2D gray or RGB array (middle slice of a volume)."""
    if img.dim() == 4:
        img = img[:, img.shape[1] // 2]
    img = img.detach().float().cpu().clamp(0, 1)
    return img[0].numpy() if img.shape[0] != 3 else img.permute(1, 2, 0).numpy()


__all__ = ["Genesis", "GenesisConfig"]
