"""SimCLR-style global instance discrimination baseline (docs/method.md): views, head, method."""

from .head import ProjectionHead, encode, pooled
from .method import SimCLR, SimCLRConfig
from .views import two_views

__all__ = ["ProjectionHead", "SimCLR", "SimCLRConfig", "encode", "pooled", "two_views"]
