"""DenseCL-style dense contrast baseline (docs/method.md): views with known correspondence, dense head, method."""

from .head import DenseProjectionHead
from .method import DenseCL, DenseCLConfig
from .views import DenseViews, align, make_views

__all__ = ["DenseCL", "DenseCLConfig", "DenseProjectionHead", "DenseViews", "align", "make_views"]
