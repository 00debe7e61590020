"""Local Discrimination pretraining (docs/method.md): the method module and its schedule.

One step: 5B views (``views.py``) -> one U-Net forward -> embedding head v (and clustering
head a in stage 2) -> view b's rot90/flip undone -> loss terms (``losses/ld.py``):
stage 1: w_pd L_pd + w_mix L_mix;  stage 2: + w_ld L_ld + w_ent L_ent (+ w_balance prior).

``stage="both"`` is a schedule of two runs (:meth:`LocalDiscrimination.schedule`):
stage 1 into RUN/stage1, then stage 2 into RUN initialized from it by parameter name.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import torch

from ...config import field, to_dict
from ...errors import ConfigError
from ...losses import ld as L
from ...pictures.embeddings import save_embedding_figure
from ...runtime import distributed as dist
from ..base import PretrainMethod, Stage
from .heads import ClusterHead, EmbeddingHead
from .views import align, make_views


@dataclass
class LDConfig:
    embed_dim: int = field(32, "D: size of the per-pixel embedding v")
    num_clusters: int = field(16, "K: channels of the clustering head")
    grid: int = field(8, "G: patch grid for L_pd/L_mix (G x G in 2D, G^3 in 3D; L_pd builds a (4B G^d)^2 matrix)")
    tau_pd: float = field(0.1, "temperature of the patch discrimination loss L_pd")
    tau_mix: float = field(0.1, "temperature of the hypersphere mixup loss L_mix")
    tau_ld: float = field(0.2, "temperature of the region discrimination loss L_ld")
    w_pd: float = field(1.0, "weight of L_pd")
    w_mix: float = field(1.0, "weight of L_mix")
    w_ld: float = field(10.0, "weight of L_ld (stage 2)")
    w_ent: float = field(0.1, "weight of the assignment entropy L_ent (stage 2)")
    w_balance: float = field(0.0, "weight of the cluster-area balance prior (stage 2; 0 = off)")
    grad_both_sides: bool = field(False, "let gradients flow through partners/keys of L_pd and L_mix (reference: anchors only)")
    stage: str = field("both", "1 (L_pd + L_mix), 2 (all terms; use --init STAGE1_RUN), or both (stage 1 into OUT/stage1, then stage 2 into OUT)")
    stage1_steps: int = field(0, "with --stage both: steps of stage 1 (0 = a fifth of --steps); stage 2 gets the rest of --steps")
    crop_size: tuple[int, ...] = field((), "view size (H W or D H W) cut from each image; empty = the image size")
    crop_scale: tuple[float, ...] = field((0.3, 1.0), "random resized crop: min and max fraction of the image area")
    rotate_degrees: float = field(15.0, "random rotation range (+-degrees; 3D: about a random plane)")
    flip: bool = field(True, "random flips in the shared geometric transform")
    dihedral: bool = field(True, "view b gets a random rot90/flip that is undone on its output maps")
    shift: float = field(0.0, "view b is also cyclically shifted by up to this fraction of the view per axis, undone on its output maps, so patches cannot be matched by their place in the view (0 = off)")
    # Views a and b differ only by this jitter: too weak and patches are matched by colour or
    # brightness alone (the reference: ColorJitter(0.4, 0.4, 0.4, 0.02) + RandomGrayscale(0.2)).
    brightness: float = field(0.2, "photometric jitter: additive brightness range (0.2 is about ColorJitter's 0.4 at mid-gray)")
    contrast: float = field(0.4, "photometric jitter: contrast factor range 1 +- this")
    gamma: float = field(0.2, "photometric jitter: gamma = exp(U(-this, this))")
    saturation: float = field(0.4, "colour jitter (RGB images only): saturation factor range 1 +- this")
    hue: float = field(0.02, "colour jitter (RGB images only): hue shift range +- this fraction of a turn")
    grayscale_prob: float = field(0.2, "colour jitter (RGB images only): probability of turning a view gray")
    noise: float = field(0.03, "photometric jitter: max std of additive Gaussian noise")
    blur_prob: float = field(0.2, "photometric jitter: probability of a Gaussian blur")
    blur_sigma: float = field(1.0, "photometric jitter: max blur sigma (pixels)")
    lam_range: tuple[float, ...] = field((0.2, 0.8), "mixup lambda ~ U(lo, hi) per sample")

    def __post_init__(self) -> None:
        self.stage = str(self.stage)
        if self.stage not in ("1", "2", "both"):
            raise ConfigError(f"stage must be 1, 2 or both, got {self.stage!r}")
        if self.num_clusters < 2 or self.embed_dim < 2 or self.grid < 1:
            raise ConfigError("LD needs num_clusters >= 2, embed_dim >= 2 and grid >= 1")
        if len(self.lam_range) != 2 or not 0 <= self.lam_range[0] <= self.lam_range[1] <= 1:
            raise ConfigError(f"lam_range must be two numbers 0 <= lo <= hi <= 1, got {self.lam_range}")
        if not 0 <= self.shift <= 1:
            raise ConfigError(f"shift must be a fraction of the view between 0 and 1, got {self.shift}")
        if len(self.crop_scale) != 2 or not 0 < self.crop_scale[0] <= self.crop_scale[1] <= 1:
            raise ConfigError(f"crop_scale must be two numbers 0 < lo <= hi <= 1, got {self.crop_scale}")


class LocalDiscrimination(PretrainMethod):
    name = "ld"
    min_batch = 2
    even_batch = True  # x1 and x2 of a sample are paired
    images_per_sample = 5  # network inputs per image in one step
    Config = LDConfig

    def __init__(self, backbone, cfg: LDConfig | None = None):
        cfg = cfg or LDConfig(stage="2")
        if cfg.stage == "both":
            raise ConfigError("stage 'both' is a schedule of two runs: call train.pretrain.run_pretraining(cfg, method_cfg) (the CLI does), or build the method with stage 1 or 2")
        super().__init__(backbone, cfg)
        d, trunk, norm = backbone.config.spatial_dims, backbone.config.trunk_channels, backbone.config.norm
        self.embed_head = EmbeddingHead(d, trunk, cfg.embed_dim, norm=norm)
        # stage 1 has no clustering head at all (stage 2 creates it; init by name skips it)
        self.cluster_head = ClusterHead(d, trunk, cfg.num_clusters, norm=norm) if cfg.stage == "2" else None

    # -- inference API (used by landmarks, discovery, pictures) --------------------------
    def embed(self, images: torch.Tensor) -> torch.Tensor:
        """images (B, C, *S) -> unit pixel embeddings v (B, D, *S)."""
        return self.embed_head(self.backbone.forward_features(images).trunk)

    def assign(self, images: torch.Tensor) -> torch.Tensor:
        """images (B, C, *S) -> cluster assignments a (B, K, *S) (sum over K is 1)."""
        if self.cluster_head is None:
            raise ConfigError("this LD model is from stage 1 and has no clustering head; use a stage-2 run")
        return self.cluster_head(self.backbone.forward_features(images).trunk)

    # -- training ---------------------------------------------------------------------------
    def forward_views(self, images: torch.Tensor) -> dict[str, Any]:
        """images (2B, C, *S) -> {"embed": v (5B, D, *s), "assign": a (5B, K, *s) or None,
        "lam": (B,), "B": B, "views": LDViews}; maps are in input order (x1a, x2a, x1b, x2b, m)
        with view b's rot90/flip already undone."""
        views = make_views(images, self.cfg)
        trunk = self.backbone.forward_features(views.inputs).trunk
        v = align(self.embed_head(trunk), views)
        a = align(self.cluster_head(trunk), views) if self.cluster_head is not None else None
        return {"embed": v, "assign": a, "lam": views.lam, "B": views.B, "views": views}

    def loss_terms(self, outputs: dict[str, Any]) -> dict[str, torch.Tensor]:
        """Weighted loss terms (name -> scalar); the step's loss is their sum. Losses in float32.

        Under DDP (W processes, each with its own B samples) the terms follow the convention of
        ``runtime/distributed.py``: L_pd/L_mix anchors are local patch vectors, keys the gathered
        ones of all processes; prototypes c_k and the balance prior's areas come from gathered
        (differentiable) tensors; L_ld and L_ent are local means. The mean over processes then
        equals one process over the concatenated outputs (same views); only the pairing of
        images into samples is per process (x1/x2 are halves of each process's batch)."""
        cfg, B = self.cfg, outputs["B"]
        gather, rank = (dist.all_gather, dist.rank()) if dist.world_size() > 1 else (None, 0)
        v = outputs["embed"].float()
        u = L.patch_embeddings(v, cfg.grid)  # (5B, P, D)
        terms = {
            "pd": cfg.w_pd * L.patch_discrimination_loss(u[: 2 * B], u[2 * B : 4 * B], cfg.tau_pd, cfg.grad_both_sides, gather, rank),
            "mix": cfg.w_mix * L.mixup_loss(u[4 * B :], u[:B], u[B : 2 * B], outputs["lam"], cfg.tau_mix, cfg.grad_both_sides, gather, rank),
        }
        a = outputs.get("assign")
        if a is not None:
            a4 = a[: 4 * B].float()  # the mixup view has no region target
            r = L.region_embeddings(a4, v[: 4 * B])
            terms["ld"] = cfg.w_ld * L.region_discrimination_loss(r, L.prototypes(r, gather), cfg.tau_ld)
            terms["ent"] = cfg.w_ent * L.entropy_loss(a4)  # global mean = mean of equal-size local means
            if cfg.w_balance:
                terms["balance"] = cfg.w_balance * L.balance_loss(a4, gather)
        return terms

    def training_step(self, images: torch.Tensor) -> tuple[torch.Tensor, dict[str, float]]:
        """The terms of ``loss_terms(forward_views(images))`` (same views, same values up to float
        rounding) without full-size aligned maps: L_pd/L_mix pool the unaligned v and undo view
        b's ops on the pooled grid (``LDViews.patch_embeddings``); L_ld and L_ent are sums over
        pixels, the same in any pixel order, so they take the unaligned v and a; the clustering
        head stops at its norm layer for the mixup views, which have no region target.
        A subclass that changes ``forward_views`` or ``loss_terms`` (ld-shape) runs those."""
        base = LocalDiscrimination
        if type(self).forward_views is not base.forward_views or type(self).loss_terms is not base.loss_terms:
            terms = self.loss_terms(self.forward_views(images))
        else:
            cfg, rf = self.cfg, torch.profiler.record_function  # named phases: benchmarks/ld_speed.py --profile
            gather, rank = (dist.all_gather, dist.rank()) if dist.world_size() > 1 else (None, 0)
            with rf("ld/views"):
                views = make_views(images, cfg)
                B = views.B
            with rf("ld/network"):
                trunk = self.backbone.forward_features(views.inputs).trunk
            with rf("ld/head:embed"):
                v = self.embed_head(trunk).float()  # (5B, D, *S), view b not aligned; losses in float32
            with rf("ld/align"):
                u = views.patch_embeddings(v, cfg.grid)  # (5B, P, D), aligned on the grid
            with rf("ld/loss:pd"):
                terms = {"pd": cfg.w_pd * L.patch_discrimination_loss(u[: 2 * B], u[2 * B : 4 * B], cfg.tau_pd, cfg.grad_both_sides, gather, rank)}
            with rf("ld/loss:mix"):
                terms["mix"] = cfg.w_mix * L.mixup_loss(u[4 * B :], u[:B], u[B : 2 * B], views.lam, cfg.tau_mix, cfg.grad_both_sides, gather, rank)
            if self.cluster_head is not None:
                with rf("ld/head:cluster"):
                    a = self.cluster_head(trunk, rows=4 * B).float()  # (4B, K, *S): no mixup views
                with rf("ld/loss:ld"):
                    r = L.region_embeddings(a, v[: 4 * B])
                    terms["ld"] = cfg.w_ld * L.region_discrimination_loss(r, L.prototypes(r, gather), cfg.tau_ld)
                with rf("ld/loss:ent"):
                    terms["ent"] = cfg.w_ent * L.entropy_loss(a)
                if cfg.w_balance:
                    with rf("ld/loss:balance"):
                        terms["balance"] = cfg.w_balance * L.balance_loss(a, gather)
        loss = sum(terms.values())
        return loss, {f"loss_{k}": float(t.detach()) for k, t in terms.items()}

    def save_pictures(self, images: torch.Tensor, folder: Path) -> None:
        v = self.embed(images)
        a = self.assign(images) if self.cluster_head is not None else None
        save_embedding_figure(images, v, a, Path(folder) / "embeddings.png")

    # -- two-stage schedule -------------------------------------------------------------------
    @classmethod
    def schedule(cls, cfg, method_cfg: LDConfig | None = None) -> list[Stage]:
        """Stage 1 or 2: one ordinary run. Stage "both": stage 1 (``stage1_steps``) into
        OUT/stage1, then stage 2 (the rest of ``cfg.steps``) into OUT, initialized from stage 1
        by parameter name (``cfg.init``). With ``--resume`` a finished stage 1 is kept and the
        unfinished stage continues."""
        mcfg = method_cfg or LDConfig()
        if mcfg.stage != "both" or cfg.dry_run:
            return [Stage(cfg, mcfg)]
        n1 = mcfg.stage1_steps or max(1, cfg.steps // 5)
        if n1 >= cfg.steps:
            raise ConfigError(f"--stage1-steps {n1} leaves no steps for stage 2 out of --steps {cfg.steps}")
        out = Path(cfg.out)
        if (out / "config.yaml").exists() and not (cfg.resume or cfg.overwrite):
            raise ConfigError(f"{out}: a run already exists here; pass --resume to continue it or --overwrite to replace it")
        stage1 = out / "stage1"
        typed = {**to_dict(cfg), "method_config": to_dict(mcfg)}  # OUT/config.yaml reproduces both stages
        return [
            Stage(replace(cfg, out=str(stage1), steps=n1), replace(mcfg, stage="1"), f"{cfg.method} stage 1/2",
                  done=bool(cfg.resume and (stage1 / "model.safetensors").is_file())),
            Stage(replace(cfg, steps=cfg.steps - n1, init=str(stage1)), replace(mcfg, stage="2"), f"{cfg.method} stage 2/2", typed=typed),
        ]
