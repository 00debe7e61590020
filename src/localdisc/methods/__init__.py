"""Registry of pretraining methods: ``METHODS[name]`` is a :class:`PretrainMethod` subclass.

Add a method by writing its module and one line here. :func:`get_method` gives an error that
lists the valid names.
"""

from __future__ import annotations

import importlib
from pathlib import Path

from ..config import build_config
from ..errors import ConfigError
from ..nets import UNet
from ..nets.transfer import load_backbone_config
from ..runtime.checkpoint import load_weights
from ..runtime.run import read_run_config
from .base import PrepareContext, PretrainMethod

METHODS: dict[str, str] = {
    # name -> "module:Class" (imported on demand so that one method's import cost stays its own)
    "ld": ".ld.method:LocalDiscrimination",
    "ld-shape": ".ld_shape:ShapeGuidedLD",
    "simclr": ".simclr.method:SimCLR",
    "densecl": ".densecl.method:DenseCL",
    "genesis": ".genesis.method:Genesis",
    "cluster-contrast": ".cluster_contrast.method:ClusterContrast",
}


def get_method(name: str) -> type[PretrainMethod]:
    if name not in METHODS:
        raise ConfigError(f"unknown pretraining method {name!r}; valid: {', '.join(sorted(METHODS))}")
    module, cls = METHODS[name].split(":")
    return getattr(importlib.import_module(module, __name__), cls)


def load_pretrained_method(run_dir, device: str = "cpu") -> PretrainMethod:
    """Rebuild a finished pretraining run (config.yaml + model.safetensors) in eval mode."""

    cfg = read_run_config(run_dir)
    cls = get_method(cfg.get("method", "ld"))
    mcfg = build_config(cls.Config, cfg.get("method_config") or {})
    unet_cfg, _ = load_backbone_config(run_dir)
    model = cls(UNet(unet_cfg), mcfg)
    weights = load_weights(Path(run_dir) / "model.safetensors")
    missing, unexpected = model.load_state_dict(weights, strict=False)
    if missing or unexpected:
        raise ConfigError(f"{run_dir}: weights do not match the method {cls.name!r}: missing {missing[:5]}, unexpected {unexpected[:5]}")
    return model.to(device).eval()


__all__ = ["METHODS", "get_method", "load_pretrained_method", "PretrainMethod", "PrepareContext"]
