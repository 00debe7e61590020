"""The fine-tuned network (docs/method.md): building it, the training module, prediction.

``build_unet`` makes the U-Net (from a pretraining run's backbone config with ``--init``),
``Supervised`` wraps it with DiceCE (+ PDCR) so that DDP's forward runs the whole step,
``predict_logits`` predicts whole images (sliding window with a patch size),
``evaluate_dataset`` is the validation Dice used for model selection, and ``load_finetuned``
reads a finished run back (model.json + best/last weights).
"""

from __future__ import annotations

import json
import math
from dataclasses import replace
from pathlib import Path
from typing import Any, Sequence

import torch
from torch import nn

from ..data.datasets import ImageDataset
from ..errors import ConfigError
from ..evaluation.metrics import SegmentationMetrics
from ..losses.pdcr import PDCRLoss
from ..nets import UNet, UNetConfig
from ..nets.transfer import load_backbone_config, load_pretrained_into
from ..runtime.checkpoint import load_weights
from .finetune_config import FinetuneConfig
from .finetune_data import LabeledData


class Supervised(nn.Module):
    """U-Net + losses in one module so that DDP's forward runs the whole step.

    forward(x (B, C, *S), y (B, *S) int64) -> (loss, logs).
    """

    def __init__(self, unet: UNet, pdcr: nn.Module | None = None, pdcr_weight: float = 0.0):
        super().__init__()
        from monai.losses import DiceCELoss  # deferred: heavy optional dependency, loaded only when used

        self.unet = unet
        self.seg_loss = DiceCELoss(to_onehot_y=True, softmax=True)
        self.pdcr = pdcr
        self.pdcr_weight = pdcr_weight

    def forward(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        if self.pdcr is None:
            logits = self.unet(x)
            seg = self.seg_loss(logits.float(), y[:, None])
            return seg, {"seg_loss": seg.detach()}
        features = self.unet.forward_features(x)
        logits = self.unet.seg_head(features.trunk)
        seg = self.seg_loss(logits.float(), y[:, None])
        reg = self.pdcr(features, y)
        return seg + self.pdcr_weight * reg, {"seg_loss": seg.detach(), "pdcr_loss": reg.detach()}


def build_unet(cfg: FinetuneConfig, in_channels: int, num_classes: int) -> UNet:
    if cfg.init:
        src, _ = load_backbone_config(cfg.init)
        if src.spatial_dims != len(cfg.image_size):
            raise ConfigError(f"{cfg.init}: pretrained in {src.spatial_dims}D, but --image-size has {len(cfg.image_size)} numbers")
        unet_cfg = replace(src, in_channels=in_channels, uafs_stages=tuple(cfg.uafs_stages))
    else:
        unet_cfg = UNetConfig(spatial_dims=len(cfg.image_size), in_channels=in_channels, encoder_channels=cfg.encoder_channels,
                              decoder_channels=cfg.decoder_channels, norm=cfg.norm, uafs_stages=tuple(cfg.uafs_stages))
    return UNet(unet_cfg, out_channels=num_classes)


GUARD_FILE = "guard.json"  # written by the guard of `finetune --init` (tasks/guard.py)
TWIN = "random-init"  # the guard's random-init twin: RUN/random-init/


def kept_model_dir(run_dir: str | Path) -> Path:
    """The folder of the model a run stands for: the run itself, or its random-init twin when the
    guard found random init better on validation (RUN/guard.json says "kept": "random-init")."""
    run_dir = Path(run_dir)
    path = run_dir / GUARD_FILE
    if not path.exists():
        return run_dir
    try:
        kept = json.loads(path.read_text()).get("kept")
    except (OSError, ValueError, AttributeError) as e:
        raise ConfigError(f"{path}: not a guard decision localdisc can read ({type(e).__name__}); re-run `localdisc finetune` with "
                          "--overwrite, or delete it to use the pretrained model") from None
    if kept not in ("pretrained", TWIN):
        raise ConfigError(f"{path}: 'kept' is {kept!r}, not 'pretrained' or '{TWIN}'")
    if kept == TWIN and not (run_dir / TWIN / "model.json").is_file():
        raise ConfigError(f"{path}: keeps the random-init twin, but {run_dir / TWIN} holds no finished run (model.json)")
    return run_dir / TWIN if kept == TWIN else run_dir


def load_finetuned(run_dir: str | Path, which: str = "best", device: str | torch.device = "cpu") -> tuple[UNet, dict[str, Any]]:
    """(U-Net in eval mode, model.json info) from a finished fine-tuning run (the model its guard
    kept, see :func:`kept_model_dir`); which = best | last."""

    run_dir = kept_model_dir(run_dir)
    info_path = run_dir / "model.json"
    if not info_path.is_file():
        raise ConfigError(f"{run_dir}: no model.json; is this a finished `localdisc finetune` run?")
    info = json.loads(info_path.read_text())
    unet = UNet(UNetConfig(**info["unet"]), out_channels=int(info["num_classes"]))
    name = {"best": "best.safetensors", "last": "model.safetensors"}.get(which, which)
    unet.load_state_dict(load_weights(run_dir / name))
    return unet.to(device).eval(), info


@torch.no_grad()
def predict_logits(unet: nn.Module, images: torch.Tensor, patch: Sequence[int] = (), sw_batch_size: int = 4, overlap: float = 0.25) -> torch.Tensor:
    """images (B, C, *S) -> logits (B, K, *S); sliding window (Gaussian blend) when a patch size is set."""
    if not patch or all(p >= s for p, s in zip(patch, images.shape[2:])):
        return unet(images).float()
    from monai.inferers import sliding_window_inference  # deferred: heavy optional dependency, loaded only when used

    return sliding_window_inference(images, roi_size=tuple(patch), sw_batch_size=sw_batch_size, predictor=lambda x: unet(x).float(), overlap=overlap, mode="gaussian")


@torch.no_grad()
def evaluate_dataset(unet: UNet, ds: ImageDataset, num_classes: int, class_names: list[str], cfg: FinetuneConfig, device) -> dict[str, float]:
    """Validation Dice at the training resolution: {"val_dice": mean foreground, "val_dice_<class>": ...}."""

    was = unet.training
    unet.eval()
    m = SegmentationMetrics(num_classes, class_names, hd95=False)
    for i in range(len(ds)):
        item = ds[i]
        logits = predict_logits(unet, item["image"][None].to(device), cfg.patch_size, cfg.sw_batch_size, cfg.sw_overlap)
        m.update(logits.argmax(1)[0].cpu(), item["mask"])
    unet.train(was)
    s = m.summary()
    return {"val_dice": s["dice_mean"]["mean"], **{f"val_dice_{n}": s[f"dice_{n}"]["mean"] for n in class_names[1:]}}


def build_network(cfg: FinetuneConfig, data: LabeledData) -> tuple[UNet, PDCRLoss | None, list[str]]:
    """The U-Net (transferred from ``cfg.init`` by parameter name), the optional PDCR loss, and
    the names of the transferred tensors."""
    unet = build_unet(cfg, data.channels, data.num_classes)
    transferred = load_pretrained_into(unet, cfg.init, tuple(cfg.transfer.split("+"))) if cfg.init else []
    pdcr = None
    if cfg.pdcr:
        pdcr = PDCRLoss(unet_config=unet.config, num_classes=data.num_classes, layers=cfg.pdcr_layers, vectors_per_layer=cfg.pdcr_vectors,
                        windows=cfg.pdcr_windows, tau=cfg.pdcr_tau, cross_layer=cfg.pdcr_cross_layer, pairs=cfg.pdcr_pairs)
    return unet, pdcr, transferred


def build_optimizer(cfg: FinetuneConfig, model: torch.nn.Module, unet: UNet):
    """Adam with the encoder at ``lr * encoder_lr_scale`` and a cosine (or constant) schedule.
    Returns (optimizer, scheduler, encoder parameters)."""
    encoder_params = [p for n, p in unet.named_parameters() if n.startswith("encoder.")]
    enc_ids = {id(p) for p in encoder_params}
    groups = [{"params": [p for p in model.parameters() if id(p) not in enc_ids]}, {"params": encoder_params, "lr": cfg.lr * cfg.encoder_lr_scale}]
    optimizer = torch.optim.Adam(groups, lr=cfg.lr, weight_decay=cfg.weight_decay)
    total = cfg.steps
    lam = (lambda s: 0.5 * (1 + math.cos(math.pi * min(s, total) / total))) if cfg.schedule == "cosine" else (lambda s: 1.0)
    return optimizer, torch.optim.lr_scheduler.LambdaLR(optimizer, lam), encoder_params

__all__ = ["Supervised", "build_unet", "load_finetuned", "kept_model_dir", "GUARD_FILE", "TWIN", "predict_logits", "evaluate_dataset"]
