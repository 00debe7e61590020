"""Saving a pretrained backbone and loading it into a downstream U-Net by parameter name.

A pretraining run ends with ``RUN/backbone.safetensors`` (U-Net weights, names as in
``nets/unet.py``) and ``RUN/backbone.json`` (its :class:`UNetConfig`). Transfer copies by
name, never by position (the reference copies by position, which breaks silently), and
reports exactly which tensors were transferred and which were left at their initialization.
"""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path

import torch

from ..errors import ConfigError
from ..runtime.checkpoint import atomic_write_text, load_weights, save_weights
from .unet import UNet, UNetConfig


def save_backbone(backbone: UNet, run_dir: Path, method: str) -> None:
    save_weights(backbone.state_dict(), Path(run_dir) / "backbone.safetensors", metadata={"method": method})
    cfg = asdict(backbone.config)
    atomic_write_text(Path(run_dir) / "backbone.json", json.dumps({"method": method, "unet": cfg}, indent=2))


def load_backbone_config(run_dir: str | Path) -> tuple[UNetConfig, str]:
    path = Path(run_dir) / "backbone.json"
    if not path.is_file():
        raise ConfigError(f"{run_dir}: no backbone.json; is this a finished localdisc pretraining run?")
    info = json.loads(path.read_text())
    return UNetConfig(**info["unet"]), info.get("method", "?")


def transfer_weights(
    target: torch.nn.Module, source: dict[str, torch.Tensor], parts: tuple[str, ...] = ("encoder",), source_name: str = "source"
) -> list[str]:
    """Copy ``source`` tensors whose names start with one of ``parts`` into ``target``.

    Every selected source tensor must exist in the target with the same shape; otherwise a
    :class:`ConfigError` lists the mismatches. Returns the transferred names.
    """
    target_state = target.state_dict()
    chosen = {k: v for k, v in source.items() if k.split(".")[0] in parts}
    if not chosen:
        raise ConfigError(f"{source_name}: holds no tensors under {parts}; nothing to transfer")
    missing = [k for k in chosen if k not in target_state]
    wrong = [f"{k}: {tuple(v.shape)} vs {tuple(target_state[k].shape)}" for k, v in chosen.items() if k in target_state and v.shape != target_state[k].shape]
    if missing or wrong:
        lines = [f"missing in target: {k}" for k in missing[:10]] + [f"shape mismatch {w}" for w in wrong[:10]]
        raise ConfigError(f"{source_name}: cannot transfer into this network (different architecture or channel count?):\n  " + "\n  ".join(lines))
    target_state.update({k: v.to(target_state[k].dtype) for k, v in chosen.items()})
    target.load_state_dict(target_state)
    return sorted(chosen)


def load_pretrained_into(model: UNet, run_dir: str | Path, parts: tuple[str, ...] = ("encoder",)) -> list[str]:
    """Initialize ``model`` from a pretraining run; checks the input channel count first."""
    cfg, method = load_backbone_config(run_dir)
    if cfg.in_channels != model.config.in_channels:
        raise ConfigError(f"{run_dir}: pretrained for {cfg.in_channels} input channel(s), but the data has {model.config.in_channels}")
    if cfg.spatial_dims != model.config.spatial_dims:
        raise ConfigError(f"{run_dir}: pretrained in {cfg.spatial_dims}D, but the data is {model.config.spatial_dims}D")
    weights = load_weights(Path(run_dir) / "backbone.safetensors")
    return transfer_weights(model, weights, parts, source_name=str(run_dir))
