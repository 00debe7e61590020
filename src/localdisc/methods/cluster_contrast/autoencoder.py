"""Small dimension-agnostic convolutional autoencoder for pseudo-class features (docs/method.md).

Encoder: per width c, conv3 stride 2 - ReLU - conv3 - ReLU (halves every spatial side);
decoder: mirrored nearest-upsampling + conv3 - ReLU, a last conv3 + sigmoid to the input
channels, resized to the input size. ``features(x)``: the bottleneck (B, C_last, *S/2^L)
average-pooled to a g^d grid and flattened: (B, C_last * g^d).
Trained with MSE reconstruction by :func:`train_autoencoder` under a forked RNG, so it is
deterministic for a seed and does not disturb the training loop's random stream.
"""

from __future__ import annotations

from typing import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import nn


def _conv(d: int, cin: int, cout: int, stride: int = 1) -> nn.Module:
    return (nn.Conv2d if d == 2 else nn.Conv3d)(cin, cout, 3, stride=stride, padding=1)


class ConvAutoencoder(nn.Module):
    def __init__(self, spatial_dims: int, in_channels: int, channels: Sequence[int] = (16, 32, 64)):
        super().__init__()
        d, chans = spatial_dims, [int(c) for c in channels]
        self.spatial_dims = d
        enc, cin = [], in_channels
        for c in chans:
            enc += [_conv(d, cin, c, 2), nn.ReLU(inplace=True), _conv(d, c, c), nn.ReLU(inplace=True)]
            cin = c
        self.encoder = nn.Sequential(*enc)
        dec = []
        for c in list(reversed(chans[:-1])) + [chans[0]]:  # one upsampling per downsampling
            dec += [nn.Upsample(scale_factor=2, mode="nearest"), _conv(d, cin, c), nn.ReLU(inplace=True)]
            cin = c
        self.decoder = nn.Sequential(*dec, _conv(d, cin, in_channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = torch.sigmoid(self.decoder(self.encoder(x)))
        return out if out.shape[2:] == x.shape[2:] else F.interpolate(out, size=x.shape[2:], mode="nearest")

    def features(self, x: torch.Tensor, grid: int = 1) -> torch.Tensor:
        return pool_features(self.encoder(x), grid)


def pool_features(maps: torch.Tensor, grid: int = 1) -> torch.Tensor:
    """(B, C, *S) -> (B, C * g^d): average over a g^d grid (g capped at the map size)."""
    size = tuple(min(grid, s) for s in maps.shape[2:])
    pool = F.adaptive_avg_pool2d if maps.dim() == 4 else F.adaptive_avg_pool3d
    return pool(maps, size).flatten(1)


def train_autoencoder(
    dataset,
    spatial_dims: int,
    in_channels: int,
    channels: Sequence[int] = (16, 32, 64),
    steps: int = 300,
    batch_size: int = 16,
    lr: float = 1e-3,
    seed: int = 0,
    device: torch.device | str = "cpu",
    log: Callable[[str], None] | None = None,
) -> tuple[ConvAutoencoder, float]:
    """Fit the autoencoder on random batches of ``dataset`` ({"image": (C, *S)} items);
    returns (model in eval mode, last reconstruction MSE). ``log`` gets a progress line at every
    tenth of the steps (the phase can take minutes before the first pretraining step)."""
    device = torch.device(device)
    with torch.random.fork_rng(devices=[device] if device.type == "cuda" else []):
        torch.manual_seed(seed)
        ae = ConvAutoencoder(spatial_dims, in_channels, channels).to(device)
        opt = torch.optim.Adam(ae.parameters(), lr=lr)
        g = torch.Generator().manual_seed(seed)
        last = float("nan")
        ae.train()
        every = max(1, steps // 10)
        for step in range(1, steps + 1):
            idx = torch.randint(len(dataset), (min(batch_size, len(dataset)),), generator=g).tolist()
            x = torch.stack([dataset[i]["image"] for i in idx]).to(device)
            loss = F.mse_loss(ae(x), x)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            last = float(loss.detach())
            if log is not None and (step % every == 0 or step == steps):
                log(f"[autoencoder for the pseudo-classes] step {step}/{steps} | reconstruction MSE {last:.5f}")
    return ae.eval(), last


__all__ = ["ConvAutoencoder", "pool_features", "train_autoencoder"]
