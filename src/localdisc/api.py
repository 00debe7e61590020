"""The Python API: the CLI's commands as functions, with keyword arguments named like the CLI's
options (``--image-size 256 256`` is ``image_size=(256, 256)``). The CLI calls the same code.

    import localdisc
    ld = localdisc.pretrain(data="scans/", out="runs/ld", method="ld", steps=2000)
    ft = localdisc.finetune(data="labeled/", out="runs/ft", init=ld, labels=5)
    masks = localdisc.predict(ft, data="new_scans/", out="runs/masks")
    model = localdisc.load_model(ft)
    mask = model.segment(image_array)          # (C, *S) or (*S) array in -> (*S) class map out
    localdisc.export(ft, format="onnx", out="model.onnx")

Every function validates its options like the CLI does (one clear ``localdisc.errors`` exception
naming the option or file) and writes only inside ``out``. See docs/api.md.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from .config import build_config
from .data.sources import pick_samples
from .errors import ConfigError
from .export import export_run
from .methods import get_method
from .runtime.outputs import check_not_inputs, data_inputs, prepare_output_folder
from .tasks.discover import load_run_model
from .tasks.embed import embed_images
from .tasks.evaluate import evaluate as _evaluate
from .tasks.guard import guarded_finetune
from .tasks.predict import load_model as _load_model
from .tasks.predict import predict as _predict
from .tasks.predict import predict_probabilities
from .train.finetune import FinetuneConfig
from .train.pretrain import PretrainConfig, run_pretraining
from .utils import pick_device


def pretrain(data: str, out: str | Path, method: str = "ld", **options: Any) -> Path:
    """Pretrain without labels; returns the run folder. ``options``: any ``localdisc pretrain``
    option, the method's own included (``steps=2000, image_size=(256, 256), shift=0.5``)."""
    method_cls = get_method(method)
    own = set(method_cls.Config.__dataclass_fields__)
    common = {k: v for k, v in options.items() if k not in own}
    cfg = build_config(PretrainConfig, common, {"data": str(data), "out": str(out), "method": method})
    mcfg = build_config(method_cls.Config, {k: v for k, v in options.items() if k in own})
    return Path(run_pretraining(cfg, mcfg))


def finetune(data: str, out: str | Path, init: str | Path | None = None, **options: Any) -> Path:
    """Supervised fine-tuning (from random init, or ``init=`` a pretraining run); returns the run
    folder. ``options``: any ``localdisc finetune`` option (``labels=5, steps=2000``). With
    ``init``, the guard (``guard=True``) also fine-tunes from random init and keeps the better one
    on validation, as the command does."""
    given = {"data": str(data), "out": str(out), **({"init": str(init)} if init else {})}
    return Path(guarded_finetune(build_config(FinetuneConfig, options, given)))


def evaluate(run: str | Path, split: str = "test", **options: Any) -> dict[str, Any]:
    """Score a fine-tuned run on a split; returns the summary (``localdisc evaluate``)."""
    return _evaluate(run, split=split, **options)


@dataclass
class Model:
    """A fine-tuned segmenter with its preprocessing: ``segment`` and ``probabilities`` take an
    image array as the readers return it ((C, *S) floats in [0, 1]; a 2D array is one gray image)."""

    network: torch.nn.Module
    info: dict[str, Any]
    device: torch.device

    @property
    def class_names(self) -> list[str]:
        return list(self.info["class_names"])

    def probabilities(self, image: np.ndarray, tta: bool = False) -> np.ndarray:
        """(C, *S) or (*S) -> (K, *S) class probabilities at the image's own size."""
        x = np.asarray(image, dtype=np.float32)
        dims = len(self.info["image_size"])
        if x.ndim == dims:
            x = x[None]
        if x.ndim != dims + 1:
            raise ConfigError(f"expected a {dims}-D image shaped (C, *S) or (*S), got shape {x.shape}")
        if x.shape[0] != int(self.info["in_channels"]):
            raise ConfigError(f"the model takes {self.info['in_channels']} channel(s), the image has {x.shape[0]}")
        return predict_probabilities(self.network, x, self.info, self.device, tta).numpy()

    def segment(self, image: np.ndarray, tta: bool = False) -> np.ndarray:
        """(C, *S) or (*S) -> (*S) class indices (0 = background)."""
        return self.probabilities(image, tta).argmax(0)


def load_model(model: str | Path, checkpoint: str = "best", device: str = "auto") -> Model:
    """A fine-tuned run folder or an exported ``.safetensors`` as a :class:`Model`."""
    dev = pick_device(device)
    network, info = _load_model(model, checkpoint, dev)
    return Model(network, info, dev)


def predict(model: str | Path, data: str | Path, out: str | Path, **options: Any) -> dict[str, Any]:
    """Masks for every image of ``data`` written into ``out`` (``localdisc predict``); options:
    checkpoint, device, tta, save_probabilities, max_overlays, max_images, overwrite."""
    return _predict(model, str(data), out, **{"log": lambda *_: None, **options})


def embed(run: str | Path, data: str | Path, out: str | Path, split: str = "all", max_overlays: int = 16, device: str = "auto") -> dict[str, Any]:
    """Pixel embeddings and cluster maps of a pretraining run (``localdisc embed``)."""

    samples = pick_samples(str(data), split)
    check_not_inputs(out, (f for s in samples for f in (s.image, s.mask, s.fov)))
    prepare_output_folder(out, [*data_inputs(str(data)), run], False, "embed")
    return embed_images(load_run_model(run, device), samples, out, max_pictures=max_overlays)


def export(run: str | Path, format: str, out: str | Path, checkpoint: str = "best", check: bool = True, overwrite: bool = False) -> Path:
    """A deployable file of a run (``localdisc export``): torch-export, onnx, safetensors, monai-bundle, encoder."""
    return export_run(run, format, out, which=checkpoint, check=check, overwrite=overwrite)


__all__ = ["pretrain", "finetune", "evaluate", "predict", "load_model", "Model", "embed", "export"]
