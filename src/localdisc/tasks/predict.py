"""Segment new images: ``predict(model, data, out)``.

The model is a fine-tuned run folder (``best`` or ``last`` weights) or an exported
``.safetensors`` beside its ``.json``. Every image goes through the run's own preprocessing:
the same reader and intensity rule, resize to the run's image size (a sliding window of the
run's patch size when it trained on patches), softmax, and back to the image's own size. Masks
are written in the source's geometry: a PNG of the original size (0/255 for one foreground
class, else class indices) or a NIfTI with the source volume's voxel order and affine.

Optional: class probabilities (``probabilities/``), overlays of the first N images
(``overlays/``), and flip test-time augmentation (the mean of the prediction and that of the
left-right mirrored image, mirrored back; classes that a mirror swaps, such as the left and
right lung, are swapped back).

Writes into ``out``: ``predictions/ID.png|.nii.gz``, ``predictions.csv`` (one row per image:
id, source, mask file, size, and per class the area in pixels and, where the spacing is
known, in mm^2 / mm^3), ``summary.json``.
"""

from __future__ import annotations

import json
import math
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from ..data.datasets import resize_image
from ..data.geometry import to_source
from ..data.io import convert_channels, read_geometry
from ..data.records import load_sample_image
from ..data.sources import resolve_source
from ..errors import ConfigError, DataError
from ..nets import UNet, UNetConfig
from ..report.overlays import save_mask, save_overlay
from ..runtime.checkpoint import load_weights
from ..runtime.outputs import StagedOutput, atomic_write_bytes, atomic_write_csv, check_not_inputs, data_inputs
from ..train.finetune_model import load_finetuned, predict_logits
from ..utils import SafeNames, pick_device, progress


def load_model(model: str | Path, checkpoint: str = "best", device: str | torch.device = "cpu") -> tuple[torch.nn.Module, dict[str, Any]]:
    """(U-Net in eval mode, its info: classes, image size, patch size, channels) from a fine-tuned
    run folder or an exported ``.safetensors`` (with the ``.json`` export writes beside it)."""

    path = Path(model)
    if path.is_dir():
        if not (path / "model.json").is_file():
            hint = " (a pretraining run: fine-tune it first with `localdisc finetune --init RUN`)" if (path / "backbone.json").is_file() else ""
            raise ConfigError(f"{path}: no model.json; not a finished `localdisc finetune` run{hint}")
        if checkpoint == "best" and not (path / "best.safetensors").is_file():
            checkpoint = "last"  # a run without validation images keeps only its last weights
        return load_finetuned(path, checkpoint, device)
    if path.suffix == ".safetensors" and path.is_file():
        meta = path.with_suffix(".json")
        if not meta.is_file():
            raise ConfigError(f"{path}: no {meta.name} beside it; export with `localdisc export RUN --format safetensors`")
        try:
            info = json.loads(meta.read_text())
            unet = UNet(UNetConfig(**info["unet"]), out_channels=int(info["num_classes"]))
        except (ValueError, KeyError, TypeError) as e:
            raise ConfigError(f"{meta}: not a localdisc model description ({str(e)[:80]})") from None
        unet.load_state_dict(load_weights(path))
        return unet.to(device).eval(), info
    raise ConfigError(f"{path}: expected a fine-tuned run folder or an exported .safetensors model")


@torch.no_grad()
def predict_probabilities(unet: torch.nn.Module, image: np.ndarray, info: dict[str, Any], device, tta: bool = False,
                          sw_batch_size: int = 4, overlap: float = 0.25) -> torch.Tensor:
    """image (C, *S) in [0, 1] -> class probabilities (K, *S) on the CPU, at the image's own size.
    ``tta``: the mean with the left-right mirrored prediction (last axis), mirrored back, with
    the run's ``flip_pairs`` classes swapped back."""

    size = tuple(int(s) for s in info["image_size"])
    x = resize_image(torch.from_numpy(image), size)[None].to(device)
    patch = tuple(info.get("patch_size") or ())
    probs = torch.softmax(predict_logits(unet, x, patch, sw_batch_size, overlap), dim=1)
    if tta:
        mirrored = torch.softmax(predict_logits(unet, x.flip(-1), patch, sw_batch_size, overlap), dim=1).flip(-1)
        order = list(range(probs.shape[1]))
        for a, b in info.get("flip_pairs") or ():
            order[a], order[b] = order[b], order[a]
        probs = (probs + mirrored[:, order]) / 2
    orig = tuple(image.shape[1:])
    if orig != size:
        probs = F.interpolate(probs, size=orig, mode="bilinear" if len(orig) == 2 else "trilinear", align_corners=False)
    return probs[0].cpu()


def predict(model: str | Path, data: str, out: str | Path, checkpoint: str = "best", device: str = "auto", tta: bool = False,
            save_probabilities: bool = False, max_overlays: int = 0, max_images: int = 0, overwrite: bool = False,
            log: Any = print) -> dict[str, Any]:
    """Segment every image of ``data`` (a folder, a file, a manifest or any --data spec; masks, if
    any, are ignored) with ``model``; write masks into ``out``. Returns summary.json's content."""

    if max_overlays < 0 or max_images < 0:
        raise ConfigError("--max-overlays and --max-images must be >= 0")
    dev = pick_device(device)
    unet, info = load_model(model, checkpoint, dev)
    samples = resolve_source(data)
    samples = samples[:max_images] if max_images > 0 else samples
    if not samples:
        raise DataError(f"{data}: no images found")
    inputs = [*data_inputs(data), model]
    check_not_inputs(out, (f for s in samples for f in (s.image, s.mask, s.fov)))
    final = Path(out)
    staged = StagedOutput(final, inputs, overwrite, "predict")  # earlier results stay until this one succeeds
    out = staged.path
    try:
        num_classes, class_names = int(info["num_classes"]), list(info["class_names"])
        channels = int(info["in_channels"])
        names, rows, started, noted = SafeNames(), [], time.time(), False
        log(f"predict: {len(samples)} images of {data} with {model} ({', '.join(class_names[1:])}; {'x'.join(map(str, info['image_size']))}"
            f"{', patches ' + 'x'.join(map(str, info['patch_size'])) if info.get('patch_size') else ''}{', flip TTA' if tta else ''}) -> {final}")
        for i, s in enumerate(progress(samples, desc="predict")):
            image = load_sample_image(s)
            if image.ndim - 1 != len(info["image_size"]):
                raise DataError(f"{s.image}: a {image.ndim - 1}-D image, but the model segments {len(info['image_size'])}-D ones")
            if image.shape[0] != channels and not noted:
                noted = True
                log(f"note: {s.image} has {image.shape[0]} channel(s) and the model {channels}; every such image is converted "
                    f"({'gray repeated to RGB' if image.shape[0] == 1 else 'RGB to luminance'})")
            image = convert_channels(image, channels, s.image)
            probs = predict_probabilities(unet, image, info, dev, tta)
            pred = probs.argmax(0).numpy()
            name = names(s.id)
            geometry = read_geometry(s.image) if pred.ndim == 3 else None
            mask_path = save_mask(pred, out / "predictions" / f"{name}{'.nii.gz' if pred.ndim == 3 else '.png'}", num_classes, s.spacing, geometry=geometry)
            if save_probabilities:
                save_probabilities_file(probs.numpy(), out / "probabilities" / name, geometry)
            if i < max_overlays:
                save_overlay(image, pred, None, out / "overlays" / f"{name}.png", class_names, title=f"{s.id}: predicted")
            rows.append(_row(s, name, mask_path, pred, class_names, _area_unit(pred.ndim, s.spacing or (geometry.spacing if geometry is not None else None))))
        atomic_write_csv(out / "predictions.csv", rows)
        summary = {"model": str(model), "checkpoint": checkpoint, "data": str(data), "n_images": len(samples), "tta": tta,
                   "class_names": class_names, "seconds": round(time.time() - started, 1), "out": str(final)}
        atomic_write_bytes(out / "summary.json", json.dumps(summary, indent=2).encode())
    except BaseException:
        staged.abandon()
        raise
    out = staged.commit()
    summary["out"] = str(out)
    log(f"predict: {len(samples)} masks in {out / 'predictions'} ({summary['seconds']:.0f} s); per-image areas in {out / 'predictions.csv'}")
    return summary


def save_probabilities_file(probs: np.ndarray, stem: Path, geometry=None) -> Path:
    """(K, *S) class probabilities -> ``stem.npy`` (float16) or, for a volume with a known
    geometry, ``stem.nii.gz``: (x, y, z, K) float32 in the source's voxel order and affine."""
    stem.parent.mkdir(parents=True, exist_ok=True)
    if probs.ndim == 4 and geometry is not None:
        import nibabel as nib  # deferred: heavy optional dependency, loaded only when used

        data = np.stack([to_source(p, geometry) for p in probs], axis=-1).astype(np.float32)
        path = stem.with_name(stem.name + ".nii.gz")
        nib.save(nib.Nifti1Image(data, geometry.affine), str(path))
        return path
    path = stem.with_name(stem.name + ".npy")
    np.save(path, probs.astype(np.float16))
    return path


def _row(s, name: str, mask_path: Path, pred: np.ndarray, class_names: list[str], unit: tuple[str, float]) -> dict[str, Any]:
    label, scale = unit
    row: dict[str, Any] = {"id": s.id, "image": s.image, "mask": str(Path("predictions") / mask_path.name), "size": "x".join(map(str, pred.shape))}
    for k, cls in enumerate(class_names[1:], start=1):
        n = int((pred == k).sum())
        row[f"{cls}_pixels"] = n
        if not math.isnan(scale):
            row[f"{cls}_{label}"] = round(n * scale, 3)
    return row


def _area_unit(ndim: int, spacing) -> tuple[str, float]:
    """Column suffix and size of one pixel/voxel: mm2 / mm3 where the spacing is known."""
    if not spacing or len(spacing) != ndim:
        return "", math.nan
    return ("mm2" if ndim == 2 else "mm3"), float(np.prod([float(v) for v in spacing]))


__all__ = ["predict", "load_model", "predict_probabilities"]
