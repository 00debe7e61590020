"""Networks: the dimension-agnostic U-Net backbone and small heads."""

from .unet import UNet, UNetConfig, UNetFeatures, conv_nd, norm_nd

__all__ = ["UNet", "UNetConfig", "UNetFeatures", "conv_nd", "norm_nd"]
