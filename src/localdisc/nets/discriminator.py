"""A small PatchGAN-style mask discriminator for shape-guided discovery (docs/method.mdb).

Strided convolutions (kernel 4, stride 2) with LeakyReLU(0.2), then a 3x3 conv to one logit per
patch. The reference uses ``nn.LeakyReLU(True)``, which sets negative_slope=1.0 (a linear
network, unable to judge shape): that bug is fixed here.

No BatchNorm on purpose: the shape-guided loss evaluates the discriminator twice per step, once
with detached parameters through ``torch.func.functional_call``; running statistics would then
be updated by the generator pass. GroupNorm has no buffers and is safe.

``lr_scale`` gives the discriminator its own effective learning rate although the pretraining
loop has ONE Adam optimizer: each conv stores w / lr_scale and multiplies by lr_scale at run time
(the "equalized learning rate" trick of ProGAN). Adam's step on the stored tensor is about lr
whatever the gradient scale, so the effective weights move about lr_scale * lr per step.

Input (B, C, *S) masks/probabilities in [0, 1]; output (B, 1, *S / 2**num_layers) logits.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class ScaledConv(nn.Module):
    """Conv (2D/3D) whose effective weight and bias are ``lr_scale`` times the stored tensors."""

    def __init__(self, spatial_dims: int, cin: int, cout: int, kernel_size: int, stride: int = 1, padding: int = 0, lr_scale: float = 1.0):
        super().__init__()
        ref = {2: nn.Conv2d, 3: nn.Conv3d}[spatial_dims](cin, cout, kernel_size, stride=stride, padding=padding)
        self.weight = nn.Parameter(ref.weight.detach() / lr_scale)
        self.bias = nn.Parameter(ref.bias.detach() / lr_scale)
        self.stride, self.padding, self.lr_scale = stride, padding, float(lr_scale)
        self._conv = {2: F.conv2d, 3: F.conv3d}[spatial_dims]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self._conv(x, self.weight * self.lr_scale, self.bias * self.lr_scale, stride=self.stride, padding=self.padding)


class MaskDiscriminator(nn.Module):
    def __init__(self, spatial_dims: int = 2, in_channels: int = 1, width: int = 32, num_layers: int = 4, group_norm: bool = True, lr_scale: float = 1.0):
        super().__init__()
        if spatial_dims not in (2, 3):
            raise ValueError(f"spatial_dims must be 2 or 3, got {spatial_dims}")
        if lr_scale <= 0:
            raise ValueError(f"lr_scale must be positive, got {lr_scale}")

        def conv(cin, cout, k, stride=1, padding=0):
            return ScaledConv(spatial_dims, cin, cout, k, stride, padding, lr_scale)

        layers: list[nn.Module] = []
        cin = in_channels
        for i in range(num_layers):
            cout = width * min(2**i, 8)
            layers.append(conv(cin, cout, 4, stride=2, padding=1))
            if group_norm and i > 0:
                layers.append(nn.GroupNorm(min(8, cout), cout))
            layers.append(nn.LeakyReLU(0.2, inplace=True))
            cin = cout
        layers.append(conv(cin, 1, 3, padding=1))
        self.net = nn.Sequential(*layers)
        self.spatial_dims = spatial_dims

    def forward(self, masks: torch.Tensor) -> torch.Tensor:
        # Map [0, 1] to [-1, 1] so that an all-background input is not the zero vector.
        return self.net(2.0 * masks - 1.0)
