"""Local Discrimination (LD) pretraining: heads, views, method (docs/method.md)."""

from .heads import ClusterHead, EmbeddingHead
from .method import LDConfig, LocalDiscrimination
from .views import LDViews, align, make_views

__all__ = ["ClusterHead", "EmbeddingHead", "LDConfig", "LocalDiscrimination", "LDViews", "align", "make_views"]
