"""Cluster-guided contrastive pretraining (docs/method.md): autoencoder, pseudo-classes, method."""

from .autoencoder import ConvAutoencoder, pool_features, train_autoencoder
from .method import ClusterContrast, ClusterContrastConfig
from .pseudo_classes import PseudoClasses, assign_new_images, cluster_features, extract_features, save_pseudo_classes

__all__ = [
    "ClusterContrast",
    "ClusterContrastConfig",
    "ConvAutoencoder",
    "PseudoClasses",
    "assign_new_images",
    "cluster_features",
    "extract_features",
    "pool_features",
    "save_pseudo_classes",
    "train_autoencoder",
]
