"""Pure loss functions (tensor in, scalar out), each documented with shapes and equation."""

from .ld import (
    balance_loss,
    entropy_loss,
    instance_spreading_loss,
    mixup_loss,
    mixup_targets,
    paired_contrastive_loss,
    patch_discrimination_loss,
    patch_embeddings,
    prototypes,
    region_discrimination_loss,
    region_embeddings,
)

__all__ = [
    "balance_loss",
    "entropy_loss",
    "instance_spreading_loss",
    "mixup_loss",
    "mixup_targets",
    "paired_contrastive_loss",
    "patch_discrimination_loss",
    "patch_embeddings",
    "prototypes",
    "region_discrimination_loss",
    "region_embeddings",
]
