"""DenseCL-style dense contrast (docs/method.md, Baselines): a global and a dense InfoNCE term.

One step: two views per image (``views.py``) -> one U-Net pass over both ->
- global: pooled deepest encoder map -> MLP head -> NT-Xent (tau_global);
- dense: ``dense_source`` maps (decoder trunk by default, so the decoder is pretrained too, or
  the deepest encoder map as in DenseCL) -> view 2 aligned -> pooled to a G^d grid -> conv1x1
  head -> dense InfoNCE (tau_dense) where grid cell l of view 1 is positive with cell
  ``match(l)`` of view 2 of the same image; negatives: every cell of the other images.
  ``match="geometric"``: exact, from the shared crop (identity after alignment);
  ``match="feature"``: DenseCL's argmax-cosine of the (detached) backbone features.
Loss = (1 - dense_weight) L_global + dense_weight L_dense, each symmetrized over the views.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ...config import field
from ...errors import ConfigError, TrainingError
from ...losses.densecl import dense_info_nce, match_by_similarity
from ...losses.ntxent import nt_xent
from ..base import PrepareContext, PretrainMethod
from ..simclr.head import ProjectionHead, pooled
from ..simclr.method import SimCLRConfig
from .head import DenseProjectionHead
from .views import align, make_views


@dataclass
class DenseCLConfig(SimCLRConfig):
    tau_dense: float = field(0.2, "temperature of the dense InfoNCE term")
    dense_weight: float = field(0.5, "lambda: loss = (1 - lambda) global + lambda dense (DenseCL: 0.5)")
    dense_source: str = field("decoder", "features for the dense head: decoder (full-resolution trunk) | encoder (deepest map)")
    dense_dim: int = field(64, "output size of the dense projection head")
    dense_hidden: int = field(128, "hidden width of the dense projection head")
    grid: int = field(8, "G: dense maps are pooled to G x G (G^3 in 3D) cells before contrast")
    match: str = field("geometric", "pixel correspondence: geometric (views share a crop; exact) | feature (independent crops, argmax cosine as in DenseCL)")
    dihedral: bool = field(True, "with match=geometric: view 2 gets a random rot90/flip undone on its maps")
    same_image_negatives: bool = field(False, "also use the other cells of the same image as negatives")

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.dense_source not in ("decoder", "encoder"):
            raise ConfigError(f"dense_source must be decoder or encoder, got {self.dense_source!r}")
        if self.match not in ("geometric", "feature"):
            raise ConfigError(f"match must be geometric or feature, got {self.match!r}")
        if not 0 <= self.dense_weight <= 1 or self.grid < 1:
            raise ConfigError("dense_weight must be in [0, 1] and grid >= 1")


class DenseCL(PretrainMethod):
    name = "densecl"
    min_batch = 2  # negatives come from the other images of the batch
    Config = DenseCLConfig

    def __init__(self, backbone, cfg: DenseCLConfig | None = None):
        super().__init__(backbone, cfg or DenseCLConfig())
        c, d = backbone.config, backbone.config.spatial_dims
        self.proj_head = ProjectionHead(c.encoder_channels[-1], self.cfg.proj_hidden, self.cfg.proj_dim, c.norm)  # per-sample norm under --norm group: exact under DDP
        src = c.trunk_channels if self.cfg.dense_source == "decoder" else c.encoder_channels[-1]
        self.dense_head = DenseProjectionHead(d, src, self.cfg.dense_hidden, self.cfg.dense_dim, self.cfg.grid)
        self._gather = None

    def prepare(self, ctx: PrepareContext) -> None:
        self._gather = ctx.gather

    def training_step(self, images: torch.Tensor) -> tuple[torch.Tensor, dict[str, float]]:
        n = images.shape[0]
        if n < 2:
            raise TrainingError(f"densecl contrasts images within a batch and needs at least 2 images per process; got {n} (raise --batch-size)")
        views = make_views(images, self.cfg)
        feats = self.backbone.forward_features(torch.cat([views.v1, views.v2]))
        z = self.proj_head(pooled(feats.encoder[-1]))
        l_global = nt_xent(z[:n], z[n:], self.cfg.tau, gather=self._gather)

        maps = feats.trunk if self.cfg.dense_source == "decoder" else feats.encoder[-1]
        m1, m2 = maps[:n], align(maps[n:], views)
        q1, q2 = self.dense_head(m1), self.dense_head(m2)  # (n, D, L)
        if self.cfg.match == "feature":
            with torch.no_grad():
                f1, f2 = self.dense_head.pool(m1).flatten(2), self.dense_head.pool(m2).flatten(2)
                m12, m21 = match_by_similarity(f1, f2), match_by_similarity(f2, f1)
        else:
            m12 = m21 = None
        kw = dict(same_image_negatives=self.cfg.same_image_negatives, gather=self._gather)
        l_dense = 0.5 * (dense_info_nce(q1, q2, self.cfg.tau_dense, m12, **kw) + dense_info_nce(q2, q1, self.cfg.tau_dense, m21, **kw))
        w = self.cfg.dense_weight
        loss = (1 - w) * l_global + w * l_dense
        return loss, {"global": float(l_global.detach()), "dense": float(l_dense.detach())}


__all__ = ["DenseCL", "DenseCLConfig"]
