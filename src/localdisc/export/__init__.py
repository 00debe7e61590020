"""Export a finished run for deployment: torch.export program, ONNX, safetensors, MONAI bundle, encoder.

``export_run(run_dir, fmt, out)``:

- fine-tuning runs (``model.json`` + ``best.safetensors``/``model.safetensors``, see
  :func:`localdisc.train.finetune.load_finetuned`) export the whole segmentation network
  (input (B, C, *image_size) in [0, 1] -> logits (B, num_classes, *S)) as ``torch-export``
  (``.pt2``), ``onnx`` (dynamo exporter), ``safetensors`` (weights + JSON config) or
  ``monai-bundle``;
- pretraining runs (``backbone.safetensors`` + ``backbone.json``) and fine-tuning runs export
  the ``encoder`` alone (``encoder.*`` tensors + JSON with the UNetConfig) for transfer.

torch.export and ONNX exports are checked against the PyTorch model on a random input; a
mismatch raises instead of writing a silently wrong file.
"""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path
from typing import Any

import torch

from ..errors import ConfigError
from ..nets.transfer import load_backbone_config
from ..runtime.checkpoint import atomic_write_text, load_weights, save_weights
from ..runtime.outputs import check_output_file, check_output_folder, claim, clear_owned
from ..train.finetune_model import load_finetuned
from .bundle import write_bundle
from .onnx import to_onnx
from .torch_export import example_input, to_torch_export

FORMATS = ("torch-export", "onnx", "safetensors", "monai-bundle", "encoder")


def is_finetune_run(run_dir: Path) -> bool:
    return (Path(run_dir) / "model.json").is_file()


def load_segmenter(run_dir: str | Path, which: str = "best") -> tuple[torch.nn.Module, dict[str, Any]]:
    """(U-Net with seg head in eval mode on the CPU, model.json info) of a fine-tuning run."""
    run_dir = Path(run_dir)
    if not is_finetune_run(run_dir):
        hint = " (this is a pretraining run: only --format encoder applies)" if (run_dir / "backbone.json").is_file() else ""
        raise ConfigError(f"{run_dir}: no model.json; not a finished `localdisc finetune` run{hint}")

    name = {"best": "best.safetensors", "last": "model.safetensors"}.get(which, which)
    if not (run_dir / name).is_file():
        which = "last" if which == "best" else which
    model, info = load_finetuned(run_dir, which=which, device="cpu")
    return model.float().eval(), info


def export_encoder(run_dir: str | Path, out: str | Path, overwrite: bool = False) -> Path:
    """``encoder.*`` weights -> OUT (.safetensors) + OUT with .json (UNetConfig, source run)."""

    run_dir, out = Path(run_dir), _with_suffix(out, ".safetensors")
    _check_files(run_dir, [out, out.with_suffix(".json")], overwrite)
    if (run_dir / "backbone.json").is_file():
        cfg, method = load_backbone_config(run_dir)
        weights, unet_cfg = load_weights(run_dir / "backbone.safetensors"), asdict(cfg)
    else:
        model, info = load_segmenter(run_dir)
        weights, unet_cfg, method = model.state_dict(), info["unet"], "finetune"
    enc = {k: v for k, v in weights.items() if k.startswith("encoder.")}
    if not enc:
        raise ConfigError(f"{run_dir}: holds no encoder.* tensors")
    save_weights(enc, out, metadata={"source": str(run_dir), "method": method})
    atomic_write_text(out.with_suffix(".json"), json.dumps({"method": method, "unet": unet_cfg, "parts": ["encoder"], "source": str(run_dir)}, indent=2))
    return out


def export_run(run_dir: str | Path, fmt: str, out: str | Path, which: str = "best", check: bool = True, overwrite: bool = False) -> Path:
    """Write ``run_dir`` as ``fmt`` (one of :data:`FORMATS`) to ``out``; returns the written path.
    ``out`` may not be a file of the run, and replaces an existing file or bundle only with
    ``overwrite`` (:mod:`localdisc.runtime.outputs`)."""
    if fmt not in FORMATS:
        raise ConfigError(f"unknown export format {fmt!r}; valid: {', '.join(FORMATS)}")
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise ConfigError(f"{run_dir}: no such run folder")
    if fmt == "encoder":
        return export_encoder(run_dir, out, overwrite)
    if fmt == "monai-bundle":
        check_output_folder(out, [run_dir], overwrite)
    else:
        main = _with_suffix(out, {"torch-export": ".pt2", "onnx": ".onnx", "safetensors": ".safetensors"}[fmt])
        _check_files(run_dir, [main] + ([main.with_suffix(".json")] if fmt == "safetensors" else []), overwrite)
    model, info = load_segmenter(run_dir, which)
    if fmt == "torch-export":
        return to_torch_export(model, info, _with_suffix(out, ".pt2"), check=check)
    if fmt == "onnx":
        return to_onnx(model, info, _with_suffix(out, ".onnx"), check=check)
    if fmt == "safetensors":
        path = _with_suffix(out, ".safetensors")
        save_weights(model.state_dict(), path, metadata={"source": str(run_dir)})
        atomic_write_text(path.with_suffix(".json"), json.dumps(info, indent=2))
        return path

    clear_owned(Path(out))  # an earlier bundle of localdisc's: no stale file survives
    written = write_bundle(model, info, Path(out), check=check)
    claim(Path(out), "monai-bundle")
    return written


def _check_files(run_dir: Path, paths: list[Path], overwrite: bool) -> None:
    for path in paths:
        check_output_file(path, overwrite=overwrite, protected=[run_dir])


def _with_suffix(out: str | Path, suffix: str) -> Path:
    out = Path(out)
    return out if out.suffix else out.with_suffix(suffix)


__all__ = ["FORMATS", "export_run", "export_encoder", "load_segmenter", "example_input", "is_finetune_run"]
