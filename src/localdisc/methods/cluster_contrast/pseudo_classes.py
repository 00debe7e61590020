"""Pseudo-classes for cluster-guided contrast (docs/method.md): features -> Ward clusters -> files.

- :func:`extract_features`: streams a dataset through a feature function in batches -> (n, d).
- :func:`cluster_features`: standardize, then agglomerative Ward clustering into P classes (or
  cut at a linkage ``distance_threshold``). Above ``max_cluster_samples`` vectors, MiniBatchKMeans
  first over-segments into M centers, Ward clusters the centers (unweighted) and every vector
  takes the class of its nearest center: memory O(n M), never an n x n matrix; the Ward tree
  over centers ignores how many vectors each center holds (an approximation). Deterministic
  for a seed. Centroids are the class means of the standardized vectors.
- :func:`save_pseudo_classes`: RUN/pseudo_classes.csv (image, pseudo_class,
  distance_to_centroid), RUN/pseudo_classes.json (centroids, standardization, where the
  features come from), RUN/pseudo_classes_extractor.safetensors (the feature network's
  weights) and RUN/pictures/pseudo_classes.png (a few images per class + the dendrogram).
- :func:`assign_new_images`: nearest centroid in the same feature space, for new images.
"""

from __future__ import annotations

import csv
import io
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import torch

from ...data.datasets import ImageDataset
from ...data.sources import resolve_source
from ...errors import ConfigError, DataError
from ...nets import UNet, UNetConfig
from ...runtime.checkpoint import atomic_write_text, load_weights, save_weights
from ...utils import pick_device
from ..simclr.head import encode
from .autoencoder import ConvAutoencoder, pool_features

CSV_NAME, JSON_NAME, EXTRACTOR_NAME = "pseudo_classes.csv", "pseudo_classes.json", "pseudo_classes_extractor.safetensors"


@dataclass
class PseudoClasses:
    labels: np.ndarray  # (n,) int64 in 0..P-1
    distances: np.ndarray  # (n,) distance of each standardized vector to its class centroid
    centroids: np.ndarray  # (P, d) in standardized space
    mean: np.ndarray  # (d,) standardization
    std: np.ndarray  # (d,)
    linkage: np.ndarray  # scipy linkage of the Ward tree (over vectors or k-means centers)
    cut: float  # linkage height between the last merge kept and the first one cut

    @property
    def num_classes(self) -> int:
        return int(self.centroids.shape[0])


@torch.no_grad()
def extract_features(fn: Callable[[torch.Tensor], torch.Tensor], dataset, batch_size: int = 32, device: torch.device | str = "cpu") -> np.ndarray:
    """(n, d) float64 features of every dataset item, computed in batches (images not kept)."""
    out = []
    for start in range(0, len(dataset), batch_size):
        x = torch.stack([dataset[i]["image"] for i in range(start, min(start + batch_size, len(dataset)))]).to(device)
        out.append(fn(x).float().cpu().numpy())
    return np.concatenate(out).astype(np.float64)


def assign(z: np.ndarray, centroids: np.ndarray, chunk: int = 4096) -> tuple[np.ndarray, np.ndarray]:
    """Nearest centroid of standardized vectors z (n, d), chunked: (labels, distances)."""
    labels, dists = [], []
    c2 = (centroids**2).sum(1)
    for s in range(0, len(z), chunk):
        part = z[s : s + chunk]
        d2 = (part**2).sum(1, keepdims=True) - 2 * part @ centroids.T + c2[None]
        k = d2.argmin(1)
        labels.append(k)
        dists.append(np.sqrt(np.maximum(d2[np.arange(len(k)), k], 0)))
    return np.concatenate(labels).astype(np.int64), np.concatenate(dists)


def cluster_features(
    features: np.ndarray,
    num_classes: int = 8,
    distance_threshold: float = 0.0,
    max_cluster_samples: int = 5000,
    oversegment: int = 1000,
    seed: int = 0,
) -> PseudoClasses:
    from scipy.cluster.hierarchy import fcluster, linkage  # deferred: heavy optional dependency, loaded only when used

    x = np.asarray(features, dtype=np.float64)
    if x.ndim != 2 or len(x) < 2:
        raise DataError(f"pseudo-classes need at least 2 feature vectors, got shape {x.shape}")
    if not np.isfinite(x).all():
        raise DataError("pseudo-class features contain NaN/Inf (did the feature network diverge?)")
    if distance_threshold <= 0 and num_classes < 2:
        raise ConfigError(f"num_pseudo_classes must be >= 2 (one class leaves no negatives), got {num_classes}")
    mean, std = x.mean(0), x.std(0)
    std = np.where(std > 1e-8, std, 1.0)
    z = (x - mean) / std

    if len(z) <= max_cluster_samples:
        points, member = z, None
    else:
        from sklearn.cluster import MiniBatchKMeans  # deferred: heavy optional dependency, loaded only when used
        from threadpoolctl import threadpool_limits  # deferred: heavy optional dependency, loaded only when used

        m = max(2, min(oversegment, max_cluster_samples, len(z) // 2))
        km = MiniBatchKMeans(n_clusters=m, random_state=seed, n_init=1, batch_size=2048, max_iter=20, compute_labels=False)
        # one BLAS/OpenMP thread: inside a torch (or DDP) process extra threads oversubscribe the
        # cores (measured 10x slower on 2 busy cores) and the result does not depend on threading
        with threadpool_limits(limits=1):
            km.fit(z)
        points = km.cluster_centers_
        member, _ = assign(z, points)
    tree = linkage(points, method="ward")
    if distance_threshold > 0:
        point_labels = fcluster(tree, distance_threshold, criterion="distance") - 1
    else:
        point_labels = fcluster(tree, min(num_classes, len(points)), criterion="maxclust") - 1
    labels = point_labels if member is None else point_labels[member]
    # renumber 0..P-1 in order of first appearance (stable numbering; drops empty classes)
    present, first = np.unique(labels, return_index=True)
    remap = np.full(int(point_labels.max()) + 1, -1, dtype=np.int64)
    remap[present[np.argsort(first)]] = np.arange(len(present))
    labels = remap[labels]
    p = len(present)
    centroids = np.stack([z[labels == k].mean(0) for k in range(p)])
    distances = np.linalg.norm(z - centroids[labels], axis=1)
    heights = tree[:, 2]
    kept = len(points) - (int(point_labels.max()) + 1)  # merges below the cut
    cut = float((heights[kept - 1] + heights[kept]) / 2) if 0 < kept < len(heights) else float(heights[-1])
    return PseudoClasses(labels.astype(np.int64), distances, centroids, mean, std, tree, cut)


def image_names(dataset) -> list[str]:
    samples = getattr(dataset, "samples", None)
    if samples is not None:
        return [str(s.image) for s in samples]
    return [str(i) for i in range(len(dataset))]


def write_csv(path: Path, names: Sequence[str], labels: np.ndarray, distances: np.ndarray) -> None:
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(["image", "pseudo_class", "distance_to_centroid"])
    for name, k, d in zip(names, labels, distances):
        w.writerow([name, int(k), f"{float(d):.6g}"])
    atomic_write_text(Path(path), buf.getvalue())


def save_pseudo_classes(run_dir: Path, pc: PseudoClasses, dataset, info: dict[str, Any], extractor: dict[str, torch.Tensor]) -> None:
    """Write the CSV, JSON (centroids + feature-space description), extractor weights, picture."""

    run_dir = Path(run_dir)
    write_csv(run_dir / CSV_NAME, image_names(dataset), pc.labels, pc.distances)
    save_weights(extractor, run_dir / EXTRACTOR_NAME, metadata={"source": str(info.get("source", ""))})
    meta = {**info, "num_classes": pc.num_classes, "centroids": pc.centroids.tolist(), "mean": pc.mean.tolist(), "std": pc.std.tolist(), "counts": np.bincount(pc.labels, minlength=pc.num_classes).tolist()}
    atomic_write_text(run_dir / JSON_NAME, json.dumps(meta))
    save_picture(run_dir / "pictures" / "pseudo_classes.png", pc, dataset)


def save_picture(path: Path, pc: PseudoClasses, dataset, max_classes: int = 12, per_class: int = 6) -> None:
    """Rows: pseudo-classes (the images nearest their centroid); right: the Ward dendrogram."""
    import matplotlib  # deferred: heavy optional dependency, loaded only when used

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # deferred: heavy optional dependency, loaded only when used
    from scipy.cluster.hierarchy import dendrogram  # deferred: heavy optional dependency, loaded only when used

    classes = list(range(min(pc.num_classes, max_classes)))
    fig = plt.figure(figsize=(1.3 * per_class + 5, 1.3 * len(classes) + 0.6))
    grid = fig.add_gridspec(len(classes), per_class + 4)
    for r, k in enumerate(classes):
        members = np.flatnonzero(pc.labels == k)
        members = members[np.argsort(pc.distances[members])][:per_class]
        for c in range(per_class):
            ax = fig.add_subplot(grid[r, c])
            ax.axis("off")
            if c < len(members):
                ax.imshow(_show(dataset[int(members[c])]["image"]), cmap="gray", vmin=0, vmax=1)
            if c == 0:
                ax.set_title(f"class {k} (n={int((pc.labels == k).sum())})", fontsize=7, loc="left")
    ax = fig.add_subplot(grid[:, per_class:])
    dendrogram(pc.linkage, ax=ax, truncate_mode="lastp", p=min(30, len(pc.linkage) + 1), color_threshold=pc.cut, no_labels=True)
    ax.axhline(pc.cut, color="k", lw=0.8, ls="--")
    ax.set_title("Ward dendrogram (dashed: cut)", fontsize=8)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=80, bbox_inches="tight")
    plt.close(fig)


def _show(img: torch.Tensor) -> np.ndarray:
    if img.dim() == 4:
        img = img[:, img.shape[1] // 2]
    img = img.detach().float().cpu().clamp(0, 1)
    return img[0].numpy() if img.shape[0] != 3 else img.permute(1, 2, 0).numpy()


def load_feature_fn(run_dir: Path, device: torch.device | str = "cpu") -> tuple[Callable[[torch.Tensor], torch.Tensor], dict[str, Any]]:
    """Rebuild the feature function that produced a run's pseudo-classes."""

    run_dir = Path(run_dir)
    meta_path = run_dir / JSON_NAME
    if not meta_path.is_file():
        raise ConfigError(f"{run_dir}: no {JSON_NAME}; is this a cluster-contrast pretraining run?")
    meta = json.loads(meta_path.read_text())
    weights = load_weights(run_dir / EXTRACTOR_NAME)
    grid = int(meta.get("feature_grid", 1))
    if meta["source"] == "autoencoder":
        net = ConvAutoencoder(meta["spatial_dims"], meta["channels"], meta["ae_channels"])
        net.load_state_dict(weights)
        net = net.to(device).eval()
        return (lambda x: net.features(x, grid)), meta
    unet = UNet(UNetConfig(**meta["unet"]))
    unet.load_state_dict(weights)
    unet = unet.to(device).eval()
    return (lambda x: pool_features(encode(unet, x)[-1], grid)), meta


def assign_new_images(run_dir: str | Path, samples, device: str = "cpu", batch_size: int = 16) -> list[dict[str, Any]]:
    """Pseudo-class of each new :class:`Sample` (or spec string): nearest centroid in the run's
    feature space. Returns rows {"image", "pseudo_class", "distance_to_centroid"}."""

    if isinstance(samples, (str, Path)):
        samples = resolve_source(str(samples))

    device = pick_device(str(device))
    fn, meta = load_feature_fn(Path(run_dir), device)
    ds = ImageDataset(list(samples), meta["image_size"], meta["channels"], with_masks=False, cache=False)
    feats = extract_features(fn, ds, batch_size, device)
    z = (feats - np.asarray(meta["mean"])) / np.asarray(meta["std"])
    labels, dists = assign(z, np.asarray(meta["centroids"]))
    return [{"image": n, "pseudo_class": int(k), "distance_to_centroid": float(d)} for n, k, d in zip(image_names(ds), labels, dists)]


__all__ = ["PseudoClasses", "extract_features", "cluster_features", "assign", "save_pseudo_classes", "save_picture", "assign_new_images", "load_feature_fn", "write_csv"]
