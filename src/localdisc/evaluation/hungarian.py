"""Matching unsupervised clusters to labeled structures (Hungarian on Dice) and scoring them.

Clusters carry arbitrary indices, so an unsupervised segmentation is scored after a one-to-one
cluster -> structure matching that maximizes Dice (scipy ``linear_sum_assignment``). The
matching is global: overlaps are accumulated over the whole dataset, then every image is scored
with the same mapping (a per-image matching would flatter the method).

Structures are binary masks that may overlap (chest X-ray lungs overlap the
cardiomediastinum), so ground truth is a bool array (C, *S), one channel per structure.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np


def one_hot_structures(mask: np.ndarray, classes: Sequence[int]) -> np.ndarray:
    """Class-index mask (*S) -> bool (len(classes), *S)."""
    return np.stack([mask == c for c in classes])


def cluster_overlap(clusters: np.ndarray, structures: np.ndarray, num_clusters: int, valid: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Overlap counts of one image.

    clusters: int (*S) in 0..K-1; structures: bool (C, *S); valid: bool (*S) or None (e.g. a FOV).
    Returns inter (K, C), cluster_area (K,), structure_area (C,).
    """
    if clusters.shape != structures.shape[1:]:
        raise ValueError(f"cluster map {clusters.shape} and structures {structures.shape[1:]} differ in size")
    k = clusters.reshape(-1).astype(np.int64)
    s = structures.reshape(structures.shape[0], -1).astype(np.float64)
    if valid is not None:
        keep = valid.reshape(-1).astype(bool)
        k, s = k[keep], s[:, keep]
    if k.size and (k.min() < 0 or k.max() >= num_clusters):
        raise ValueError(f"cluster indices must lie in 0..{num_clusters - 1}")
    inter = np.stack([np.bincount(k, weights=sc, minlength=num_clusters) for sc in s], axis=1)
    return inter.reshape(num_clusters, -1), np.bincount(k, minlength=num_clusters).astype(np.float64), s.sum(1)


def dice_from_counts(inter: np.ndarray, area_k: np.ndarray, area_c: np.ndarray) -> np.ndarray:
    """Dice (K, C) = 2 |P_k & T_c| / (|P_k| + |T_c|); empty-vs-empty is 1."""
    denom = area_k[:, None] + area_c[None, :]
    return np.where(denom > 0, 2.0 * inter / np.maximum(denom, 1e-12), 1.0)


def match_clusters(dice: np.ndarray) -> np.ndarray:
    """Hungarian matching maximizing total Dice. dice (K, C) -> cluster index per structure (C,).

    Needs K >= C (each structure gets its own cluster).
    """
    from scipy.optimize import linear_sum_assignment  # deferred: heavy optional dependency, loaded only when used

    K, C = dice.shape
    if K < C:
        raise ValueError(f"{K} clusters cannot be matched one-to-one to {C} structures")
    rows, cols = linear_sum_assignment(-dice)
    out = np.full(C, -1, dtype=np.int64)
    out[cols] = rows
    return out


class ClusterMatcher:
    """Accumulate cluster/structure overlaps over a dataset, match once, score per structure.

    >>> m = ClusterMatcher(num_clusters=8, names=["left lung", "right lung"])
    >>> for clusters, structures in data: m.update(clusters, structures)
    >>> result = m.compute()   # {"mapping": {...}, "dice": {...}, "dice_pooled": {...}, ...}
    """

    def __init__(self, num_clusters: int, names: Sequence[str]):
        self.K = int(num_clusters)
        self.names = list(names)
        C = len(self.names)
        self.inter = np.zeros((self.K, C))
        self.area_k = np.zeros(self.K)
        self.area_c = np.zeros(C)
        self.per_image: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []

    def update(self, clusters: np.ndarray, structures: np.ndarray, valid: np.ndarray | None = None) -> None:
        if structures.shape[0] != len(self.names):
            raise ValueError(f"expected {len(self.names)} structure channels, got {structures.shape[0]}")
        counts = cluster_overlap(clusters, structures, self.K, valid)
        self.inter += counts[0]
        self.area_k += counts[1]
        self.area_c += counts[2]
        self.per_image.append(counts)

    def compute(self, mapping: dict[str, int] | None = None) -> dict:
        """Global matching; Dice per structure pooled over the dataset and mean/std over images.
        ``mapping`` (structure name -> cluster), e.g. matched on other (training) images, is
        applied instead of matching on these: matching on the scored images is optimistic."""
        if not self.per_image:
            raise ValueError("no images were added")
        pooled = dice_from_counts(self.inter, self.area_k, self.area_c)
        if mapping is not None:
            missing = [n for n in self.names if n not in mapping]
            if missing:
                raise ValueError(f"mapping names no cluster for {missing}")
            mapping = np.array([int(mapping[n]) for n in self.names])
        else:
            mapping = match_clusters(pooled)
        per_image = np.array([[dice_from_counts(i, a, b)[mapping[c], c] for c in range(len(self.names))] for i, a, b in self.per_image])
        return {
            "num_images": len(self.per_image),
            "num_clusters": self.K,
            "mapping": {n: int(mapping[c]) for c, n in enumerate(self.names)},
            "dice": {n: float(per_image[:, c].mean()) for c, n in enumerate(self.names)},
            "dice_std": {n: float(per_image[:, c].std()) for c, n in enumerate(self.names)},
            "dice_pooled": {n: float(pooled[mapping[c], c]) for c, n in enumerate(self.names)},
            "mean_dice": float(per_image.mean()),
            "per_image": per_image.tolist(),
        }
