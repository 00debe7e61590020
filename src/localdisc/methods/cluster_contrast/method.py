"""Cluster-guided contrastive pretraining (docs/method.md).

``prepare`` (before training): train a small convolutional autoencoder on the unlabeled set,
embed every image (pooled bottleneck), Ward-cluster the embeddings into P pseudo-classes
(``pseudo_classes.py``) and save them with the run. Every ``--refresh-every`` steps the
pseudo-classes are recomputed from the current U-Net encoder's pooled deepest features
(``refresh_features=encoder``). Training is SimCLR (two views, encoder, MLP head) with the
masked NT-Xent: negatives sharing the anchor's pseudo-class leave the denominator
(``same_class=remove``) or count as extra positives (``positive``, SupCon-style).

The loop gives this method the whole batch (``wants_batch``): batch["index"] looks the
pseudo-classes up. A (gathered) batch that falls entirely in one pseudo-class has no
negatives under the mask; that step uses plain NT-Xent and logs ``single_class_batch=1``.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import torch
import torch.distributed as tdist

from ...config import field
from ...errors import ConfigError
from ...losses.ntxent import nt_xent, single_class
from ..base import PrepareContext
from ..simclr.head import encode
from ..simclr.method import SimCLR, SimCLRConfig, _pos_cos
from .autoencoder import pool_features, train_autoencoder
from .pseudo_classes import cluster_features, extract_features, save_pseudo_classes


@dataclass
class ClusterContrastConfig(SimCLRConfig):
    num_pseudo_classes: int = field(8, "P: number of pseudo-classes (Ward clusters)")
    distance_threshold: float = field(0.0, "cut the Ward tree at this linkage height instead of into P classes (0 = use P)")
    same_class: str = field("remove", "same-pseudo-class samples: remove (drop them from the denominator) | positive (extra positives, SupCon)")
    ae_steps: int = field(300, "autoencoder training steps before pretraining")
    ae_channels: tuple[int, ...] = field((16, 32, 64), "autoencoder encoder widths (each halves the size)")
    ae_batch_size: int = field(16, "autoencoder batch size")
    ae_lr: float = field(1e-3, "autoencoder Adam learning rate")
    feature_grid: int = field(1, "pool the feature maps to g^d cells before clustering (1 = global average)")
    feature_batch_size: int = field(32, "images per batch when embedding the dataset")
    max_cluster_samples: int = field(5000, "above this many images, over-segment with MiniBatchKMeans and Ward-cluster the centers")
    oversegment: int = field(1000, "number of MiniBatchKMeans centers on the large-set path (capped by max_cluster_samples)")
    refresh_features: str = field("encoder", "features for --refresh-every recomputation: encoder (current U-Net encoder) | autoencoder (retrain the AE)")

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.same_class not in ("remove", "positive"):
            raise ConfigError(f"same_class must be remove or positive, got {self.same_class!r}")
        if self.refresh_features not in ("encoder", "autoencoder"):
            raise ConfigError(f"refresh_features must be encoder or autoencoder, got {self.refresh_features!r}")
        if self.distance_threshold <= 0 and self.num_pseudo_classes < 2:
            raise ConfigError(f"num_pseudo_classes must be >= 2 (a single pseudo-class leaves no negatives), got {self.num_pseudo_classes}")
        if self.max_cluster_samples < 2 or self.oversegment < 2:
            raise ConfigError("max_cluster_samples and oversegment must be >= 2")


class ClusterContrast(SimCLR):
    name = "cluster-contrast"
    Config = ClusterContrastConfig
    wants_batch = True

    def __init__(self, backbone, cfg: ClusterContrastConfig | None = None):
        super().__init__(backbone, cfg or ClusterContrastConfig())
        self._state: dict[str, Any] | None = None  # what extra_state() returns
        self._labels: torch.Tensor | None = None  # (n,) pseudo-class per dataset index

    # ---- pseudo-classes -------------------------------------------------------------
    def prepare(self, ctx: PrepareContext) -> None:
        self._gather = ctx.gather
        due = ctx.step > 0 and ctx.refresh_every > 0 and ctx.step % ctx.refresh_every == 0
        have = self._state is not None and len(self._state["labels"]) == len(ctx.dataset)
        if have and not (due and self._state["step"] < ctx.step):
            self._labels = torch.as_tensor(self._state["labels"], dtype=torch.long, device=ctx.device)
            return  # resumed with these pseudo-classes (or called twice at one step)
        self.compute_pseudo_classes(ctx)

    def compute_pseudo_classes(self, ctx: PrepareContext) -> None:
        cfg, ds = self.cfg, ctx.dataset
        first = ctx.step == 0 or self._state is None
        source = "autoencoder" if first or cfg.refresh_features == "autoencoder" else "encoder"
        c = self.backbone.config
        size = tuple(getattr(ds, "size", None) or ds[0]["image"].shape[1:])
        info: dict[str, Any] = {"source": source, "step": ctx.step, "spatial_dims": c.spatial_dims, "channels": c.in_channels, "image_size": list(size), "feature_grid": cfg.feature_grid}
        if source == "autoencoder":
            ae, mse = train_autoencoder(ds, c.spatial_dims, c.in_channels, cfg.ae_channels, cfg.ae_steps, cfg.ae_batch_size, cfg.ae_lr, seed=ctx.seed + ctx.step, device=ctx.device,
                                        log=ctx.log)
            info.update(ae_channels=list(cfg.ae_channels), ae_mse=mse)
            feats = extract_features(lambda x: ae.features(x, cfg.feature_grid), ds, cfg.feature_batch_size, ctx.device)
            extractor = ae.state_dict()
        else:
            was = self.training
            self.eval()  # BN running statistics: features must not depend on the batch
            feats = extract_features(lambda x: pool_features(encode(self.backbone, x)[-1], cfg.feature_grid), ds, cfg.feature_batch_size, ctx.device)
            self.train(was)
            info["unet"] = {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(c).items()}
            extractor = self.backbone.state_dict()
        pc = cluster_features(feats, cfg.num_pseudo_classes, cfg.distance_threshold, cfg.max_cluster_samples, cfg.oversegment, ctx.seed)
        if pc.num_classes < 2:
            raise ConfigError(f"clustering produced a single pseudo-class (distance_threshold={cfg.distance_threshold} too large?); the masked loss needs >= 2")
        labels = torch.as_tensor(pc.labels, dtype=torch.long, device=ctx.device)
        if ctx.gather is not None:
            # every rank clustered the same data; rank 0's numbering wins so gathered labels agree

            tdist.broadcast(labels, src=0)
        self._labels = labels
        self._state = {"step": ctx.step, "source": source, "num_classes": pc.num_classes, "labels": labels.cpu().tolist()}
        if ctx.is_main and ctx.run_dir is not None:
            save_pseudo_classes(ctx.run_dir, pc, ds, info, extractor)

    def extra_state(self) -> dict[str, Any]:
        return {"pseudo_classes": self._state} if self._state is not None else {}

    def load_extra_state(self, state: dict[str, Any]) -> None:
        self._state = state.get("pseudo_classes")

    @property
    def pseudo_labels(self) -> np.ndarray | None:
        return None if self._labels is None else self._labels.cpu().numpy()

    # ---- training -------------------------------------------------------------------
    def training_step(self, batch: dict[str, torch.Tensor] | torch.Tensor) -> tuple[torch.Tensor, dict[str, float]]:
        if not isinstance(batch, dict) or "index" not in batch:
            raise ConfigError("cluster-contrast needs the batch dict with 'index' (the training loop passes it when the method sets wants_batch)")
        if self._labels is None:
            raise ConfigError("cluster-contrast: pseudo-classes missing; call prepare(ctx) before training")
        images = batch["image"]
        labels = self._labels[batch["index"].to(self._labels.device)].to(images.device)
        z1, z2 = self._views_and_projections(images)
        one = single_class(labels, self._gather)
        if one:
            loss = nt_xent(z1, z2, self.cfg.tau, gather=self._gather)
        else:
            loss = nt_xent(z1, z2, self.cfg.tau, labels, self.cfg.same_class, gather=self._gather)
        return loss, {"ntxent_masked": float(loss.detach()), "pos_cos": _pos_cos(z1, z2), "single_class_batch": float(one)}


__all__ = ["ClusterContrast", "ClusterContrastConfig"]
