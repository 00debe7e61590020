"""The interface every pretraining method implements, and the transfer helpers.

A method is an ``nn.Module`` that owns the U-Net backbone (as ``self.backbone``) plus its
heads. The training loop (``train/pretrain.py``) only calls:

- ``training_step(images) -> (loss, logs)``: images (B, C, *S) in [0, 1] on the device,
  views/augmentations are built inside the method (vectorized, on device);
  a method with the class attribute ``wants_batch = True`` gets the whole batch dict instead
  ({"image": (B, C, *S), "index": (B,)} on the device);
- ``prepare(ctx)``: once before training and again every ``refresh_every`` steps (e.g.
  pseudo-classes for cluster-guided contrast); ``ctx`` is a :class:`PrepareContext`;
- ``save_pictures(images, folder)``: figures from a few fixed images (optional);
- ``schedule(cfg, method_cfg)``: the runs of a multi-stage pretraining (default: one).

Everything else (optimizer, schedule, checkpoints, DDP) belongs to the loop.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, ClassVar

import torch
from torch import nn

from ..errors import ConfigError
from ..nets import UNet


@dataclass
class PrepareContext:
    step: int
    run_dir: Path | None
    dataset: Any  # the unlabeled torch Dataset ({"image": (C, *S)} items)
    device: torch.device
    seed: int
    is_main: bool = True
    gather: Callable[[torch.Tensor], torch.Tensor] | None = None  # all-gather along dim 0 under DDP
    refresh_every: int = 0  # the loop's refresh period, so a resumed run knows whether ``step`` is a refresh step
    log: Callable[[str], None] | None = None  # a line for the terminal and train.log (long preparations show progress)


@dataclass
class Stage:
    """One run of a method's pretraining schedule: its ``PretrainConfig`` and method config.
    ``typed`` is what the run's config.yaml records (the whole schedule, for the last stage);
    ``done`` marks a stage already finished (a resumed schedule skips it)."""

    cfg: Any
    method_cfg: Any = None
    name: str = ""
    typed: dict[str, Any] | None = None
    done: bool = False


class PretrainMethod(nn.Module):
    name: ClassVar[str] = ""
    Config: ClassVar[type]  # method-specific dataclass, options become --flags of `pretrain`
    images_per_sample: ClassVar[int] = 2  # network inputs per image in one step (memory planning: runtime/memory.py)
    min_batch: ClassVar[int] = 1  # images per process a step needs (contrast within the batch needs 2)
    even_batch: ClassVar[bool] = False  # the method pairs images within the batch

    @classmethod
    def check_batch(cls, batch_size: int) -> None:
        """Refuse a batch the step cannot use, before any folder exists (not at step 1)."""
        if batch_size < cls.min_batch or (cls.even_batch and batch_size % 2):
            need = "an even number of at least 2" if cls.even_batch else f"at least {cls.min_batch}"
            raise ConfigError(f"--batch-size {batch_size}: {cls.name} needs {need} images per process")

    def __init__(self, backbone: UNet, cfg: Any):
        super().__init__()
        self.backbone = backbone
        self.cfg = cfg

    def training_step(self, images: torch.Tensor) -> tuple[torch.Tensor, dict[str, float]]:
        raise NotImplementedError

    def forward(self, images: torch.Tensor) -> tuple[torch.Tensor, dict[str, float]]:
        # DDP calls forward(); it must run the whole step so gradients sync once.
        return self.training_step(images)

    def prepare(self, ctx: PrepareContext) -> None:
        """Hook before training and every ``refresh_every`` steps; default: nothing."""

    def save_pictures(self, images: torch.Tensor, folder: Path) -> None:
        """Write figures for a few fixed images; default: nothing."""

    def extra_state(self) -> dict[str, Any]:
        """JSON-able state saved beside checkpoints (e.g. pseudo-class assignments)."""
        return {}

    def load_extra_state(self, state: dict[str, Any]) -> None:
        pass

    def backbone_state_dict(self) -> dict[str, torch.Tensor]:
        return self.backbone.state_dict()

    @classmethod
    def schedule(cls, cfg: Any, method_cfg: Any = None) -> list[Stage]:
        """The runs that make up the method's whole pretraining, in order; the training loop
        (``train.pretrain.run_pretraining``) runs them. Default: one run. Multi-stage methods
        (LD ``--stage both``) override it."""
        return [Stage(cfg, method_cfg)]
