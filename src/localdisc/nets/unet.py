"""Dimension-agnostic U-Net backbone (docs/method.md).

``UNet(UNetConfig(spatial_dims=2|3, in_channels=...))`` returns, from ``forward_features``,
the encoder feature map at every scale and the decoder maps down to the full-resolution
trunk. Default widths (encoder 16-32-64-128-128, decoder 128-64-32-32) give about 1.3 M
parameters in 2D so CPU runs are practical.

Parameter names are stable and meaningful so that pretrained weights transfer by name:
``encoder.{i}.*`` (scale i, i=0 is full resolution), ``decoder.{j}.*`` (j=0 is the deepest
up-stage), ``decoder_gates.{j}.*`` (optional UAFS blocks), ``seg_head.*``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from ..config import field
from ..errors import ConfigError
from .layers import conv_nd, norm_nd
from .uafs import UAFS


class ConvBlock(nn.Sequential):
    """(conv3 - norm - ReLU) x 2."""

    def __init__(self, spatial_dims: int, cin: int, cout: int, norm: str = "batch"):
        super().__init__(
            conv_nd(spatial_dims, cin, cout, 3, bias=False),
            norm_nd(spatial_dims, cout, norm),
            nn.ReLU(inplace=True),
            conv_nd(spatial_dims, cout, cout, 3, bias=False),
            norm_nd(spatial_dims, cout, norm),
            nn.ReLU(inplace=True),
        )


def check_widths(encoder_channels, decoder_channels) -> None:
    """One decoder width per encoder scale below the deepest; a one-line ConfigError otherwise."""
    enc, dec = list(encoder_channels), list(decoder_channels)
    if len(enc) < 2 or len(dec) != len(enc) - 1:
        raise ConfigError(f"--encoder-channels ({len(enc)} widths) needs at least 2 widths and --decoder-channels exactly one fewer "
                          f"(got {len(dec)}): e.g. --encoder-channels 16 32 64 --decoder-channels 32 16")


@dataclass
class UNetConfig:
    spatial_dims: int = field(2, "2 for images, 3 for volumes")
    in_channels: int = field(1, "input channels (1 for X-ray/CT/MRI, 3 for fundus/dermoscopy)")
    encoder_channels: tuple[int, ...] = field((16, 32, 64, 128, 128), "encoder widths, one per scale")
    decoder_channels: tuple[int, ...] = field((128, 64, 32, 32), "decoder widths, deepest first; the last is the trunk")
    norm: str = field("batch", "normalization layer", choices=("batch", "instance", "group"))
    uafs_stages: tuple[int, ...] = field((), "decoder stages (0 = deepest) followed by a UAFS block")

    def __post_init__(self) -> None:
        check_widths(self.encoder_channels, self.decoder_channels)
        self.encoder_channels = tuple(int(c) for c in self.encoder_channels)
        self.decoder_channels = tuple(int(c) for c in self.decoder_channels)
        self.uafs_stages = tuple(int(s) for s in self.uafs_stages)
        if self.spatial_dims not in (2, 3):
            raise ValueError(f"spatial_dims must be 2 or 3, got {self.spatial_dims}")
        if len(self.decoder_channels) != len(self.encoder_channels) - 1:
            raise ValueError("need exactly one decoder stage per encoder scale below the deepest")
        bad = [s for s in self.uafs_stages if not 0 <= s < len(self.decoder_channels)]
        if bad:
            raise ValueError(f"uafs_stages {bad} out of range 0..{len(self.decoder_channels) - 1}")

    @property
    def trunk_channels(self) -> int:
        return self.decoder_channels[-1]

    @property
    def downsample_factor(self) -> int:
        """Spatial sizes divisible by this avoid resampling at the skip connections."""
        return 2 ** (len(self.encoder_channels) - 1)


class UNetFeatures(NamedTuple):
    encoder: list[torch.Tensor]  # scale i: (B, C_i, *S / 2**i)
    decoder: list[torch.Tensor]  # stage j (deepest first): (B, D_j, *S / 2**(L-1-j))
    trunk: torch.Tensor  # (B, decoder_channels[-1], *S), == decoder[-1]


class UNet(nn.Module):
    """U-Net with max-pool down, interpolate-up and concatenation skips.

    forward(x: (B, C_in, *S)) -> logits (B, out_channels, *S) when ``out_channels`` > 0,
    else the trunk. ``forward_features`` gives every scale (see :class:`UNetFeatures`).
    """

    def __init__(self, config: UNetConfig | None = None, out_channels: int = 0, **kwargs):
        super().__init__()
        self.config = config = config or UNetConfig(**kwargs)
        d, enc, dec = config.spatial_dims, config.encoder_channels, config.decoder_channels
        self.encoder = nn.ModuleList()
        cin = config.in_channels
        for c in enc:
            self.encoder.append(ConvBlock(d, cin, c, config.norm))
            cin = c
        self.decoder = nn.ModuleList()
        below = enc[-1]
        for j, c in enumerate(dec):
            skip = enc[-2 - j]
            self.decoder.append(ConvBlock(d, below + skip, c, config.norm))
            below = c
        if config.uafs_stages:
            self.decoder_gates = nn.ModuleDict({str(j): UAFS(d, dec[j], norm=config.norm) for j in config.uafs_stages})
        else:
            self.decoder_gates = None
        self.out_channels = out_channels
        self.seg_head = conv_nd(d, dec[-1], out_channels, 1) if out_channels > 0 else None

    def _pool(self, x: torch.Tensor) -> torch.Tensor:
        return F.max_pool2d(x, 2, ceil_mode=True) if x.dim() == 4 else F.max_pool3d(x, 2, ceil_mode=True)

    def forward_features(self, x: torch.Tensor) -> UNetFeatures:
        if x.dim() != self.config.spatial_dims + 2:
            raise ValueError(f"expected a {self.config.spatial_dims + 2}-D input (B, C, *spatial), got shape {tuple(x.shape)}")
        if x.shape[1] != self.config.in_channels:
            raise ValueError(f"network expects {self.config.in_channels} input channel(s), got {x.shape[1]}")
        skips = []
        h = x
        for i, block in enumerate(self.encoder):
            if i > 0:
                h = self._pool(h)
            h = block(h)
            skips.append(h)
        decoded = []
        for j, block in enumerate(self.decoder):
            skip = skips[-2 - j]
            h = F.interpolate(h, size=skip.shape[2:], mode="nearest")
            h = block(torch.cat([h, skip], dim=1))
            if self.decoder_gates is not None and str(j) in self.decoder_gates:
                h = self.decoder_gates[str(j)](h)
            decoded.append(h)
        return UNetFeatures(encoder=skips, decoder=decoded, trunk=decoded[-1])

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        trunk = self.forward_features(x).trunk
        return self.seg_head(trunk) if self.seg_head is not None else trunk

    def encoder_parameter_names(self) -> list[str]:
        return [n for n in self.state_dict() if n.startswith("encoder.")]
