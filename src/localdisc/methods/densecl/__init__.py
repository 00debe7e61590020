"""DenseCL-style dense contrast baseline (SPEC 7): views with known correspondence, dense head, method."""

from .head import DenseProjectionHead
from .method import DenseCL, DenseCLConfig
from .views import DenseViews, align, make_views

__all__ = ["DenseCL", "DenseCLConfig", "DenseProjectionHead", "DenseViews", "align", "make_views"]
