"""Evaluate a fine-tuned run on a split at each image's ORIGINAL resolution.

``evaluate(run_dir, data, split="test")``: for every image, predict at the training
``image_size`` (sliding window of the training patch size), resample the class
probabilities back to the image's own size (bilinear/trilinear), take the argmax, and score
against the untouched original mask (and FOV for vessel tasks). Writes into ``out``:

- ``per_image.csv``: one row per image (Dice/IoU/HD95 per class; AUC/accuracy for vessels);
- ``summary.json``: mean/std/n per metric, plus run, data, split and checkpoint;
- ``predictions/<id>.png`` (binary tasks as 0/255, else class indices) or ``.nii.gz`` for 3D
  (the source's voxel order and affine);
- with ``save_probabilities``: ``probabilities/<id>.npy`` (float16 (K, H, W)) or, for volumes,
  ``.nii.gz`` (float32 (x, y, z, K) in the source's voxel order and affine);
- ``overlays/<case>_<id>.png``: image with truth (solid) and prediction (dashed) contours for
  the worst, median and best images by mean Dice, then images evenly spread over the ranking
  (``max_overlays`` in all); ``overlays/cases.json`` lists them.

The split is rebuilt with the run's own ``split_seed``/``test_fraction``/``val_fraction``, so
"test" is exactly the images the run never trained or selected on.
"""

from __future__ import annotations

import csv
import io
import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..config import build_config
from ..data.io import convert_channels, read_geometry
from ..data.records import load_sample_fov, load_sample_image, load_sample_mask
from ..data.sources import resolve_source
from ..errors import ConfigError, DataError
from ..evaluation.metrics import SegmentationMetrics
from ..report.overlays import save_mask, save_overlay
from ..runtime.checkpoint import atomic_write_text
from ..runtime.model_card import model_card_markdown
from ..runtime.outputs import StagedOutput, check_not_inputs, data_inputs
from ..runtime.run import read_run_config
from ..train.finetune_config import FinetuneConfig
from ..train.finetune_data import assigned_splits, finetune_samples
from ..train.finetune_model import kept_model_dir, load_finetuned
from ..utils import SafeNames, pick_device, progress
from .predict import predict_probabilities, save_probabilities_file


def _samples_for(run_cfg: dict[str, Any], data: str, split: str):
    known = {k: v for k, v in run_cfg.items() if k in FinetuneConfig.__dataclass_fields__}
    cfg = build_config(FinetuneConfig, known, {"data": data})
    if split == "all":
        return resolve_source(cfg.data, seed=cfg.split_seed)
    if split not in ("train", "val", "test"):
        raise ConfigError(f"--split must be train, val, test or all, got {split!r}")
    if split == "test":  # no need to carve validation or apply budgets
        samples = assigned_splits(resolve_source(cfg.data, seed=cfg.split_seed), cfg.split_seed, cfg.test_fraction)
        chosen = [s for s in samples if s.split == "test"]
    else:
        chosen = finetune_samples(cfg)[split]
    if not chosen:
        raise DataError(f"{data}: no images in the {split!r} split")
    return chosen


@torch.no_grad()
def predict_probs(unet, image: np.ndarray, info: dict[str, Any], device, sw_batch_size: int = 4, overlap: float = 0.25) -> torch.Tensor:
    """image (C, *S_orig) in [0, 1] -> softmax probabilities (K, *S_orig) on the CPU (the same
    path as ``localdisc predict``)."""
    return predict_probabilities(unet, image, info, device, sw_batch_size=sw_batch_size, overlap=overlap)


def evaluate(run_dir: str | Path, data: str | None = None, split: str = "test", out: str | Path | None = None,
             checkpoint: str = "best", device: str = "auto", overlays: bool = True, max_overlays: int = 100,
             save_predictions: bool = True, max_images: int = 0, save_probabilities: bool = False, overwrite: bool = False) -> dict[str, Any]:
    """Score ``run_dir`` on ``split`` of ``data`` (default: the run's data); returns summary.json's content.
    ``max_images`` > 0 scores only the first N images of the split (smoke tests). An earlier
    evaluation in ``out`` is replaced only with ``overwrite`` (and then wholly: no old prediction
    stays beside the new ones)."""

    run_dir = Path(run_dir)
    dev = pick_device(device)
    unet, info = load_finetuned(run_dir, checkpoint, dev)
    run_cfg = read_run_config(run_dir)
    data = data or run_cfg.get("data")
    samples = _samples_for(run_cfg, data, split)
    samples = samples[:max_images] if max_images > 0 else samples
    num_classes, class_names = int(info["num_classes"]), list(info["class_names"])
    vessel = any(s.extra.get("task") == "vessel" for s in samples[:1]) or info.get("task") == "vessel"
    out = Path(out) if out else run_dir / f"eval-{split}"
    check_not_inputs(out, (f for s in samples for f in (s.image, s.mask, s.fov)))
    if out.resolve() == run_dir.resolve():
        raise ConfigError(f"--out {out} is the run folder itself; evaluations go into a folder of their own (default RUN/eval-SPLIT)")
    staged = StagedOutput(out, data_inputs(data), overwrite, "evaluate")  # earlier results stay until this one succeeds
    out = staged.path
    try:
        metrics = SegmentationMetrics(num_classes, class_names, vessel=vessel)
        file_name = SafeNames()  # ids come from user data: never a path
        warned, in_mm = False, False
        for i, s in enumerate(progress(samples, desc=f"evaluate {split}")):
            image = load_sample_image(s)
            declared = int(s.extra.get("channels") or 0)  # a layout that defines its channel count (chest X-rays: gray) converts by design
            if image.shape[0] != int(info["in_channels"]) and declared != int(info["in_channels"]) and not warned:
                warned = True  # once: the same conversion applies to every image of the data
                print(f"warning: {s.image} has {image.shape[0]} channel(s) and the model {info['in_channels']}: images are converted "
                      f"({'gray repeated to RGB' if image.shape[0] == 1 else 'RGB to luminance'}); was the model trained on this kind of image?")
            image = convert_channels(image, int(info["in_channels"]), s.image)
            target = load_sample_mask(s, num_classes)
            if target is None:
                raise DataError(f"{s.image}: no mask to evaluate against")
            if tuple(target.shape) != tuple(image.shape[1:]):
                raise DataError(f"{s.mask or s.image}: mask size {tuple(target.shape)} differs from image size {tuple(image.shape[1:])}")
            fov = load_sample_fov(s) if vessel else None
            probs = predict_probs(unet, image, info, dev)
            pred = probs.argmax(0).numpy()
            geometry = read_geometry(s.image) if pred.ndim == 3 else None  # NIfTI: the header alone
            # a volume's own header gives its voxel size when the data do not state one: HD95 in mm
            spacing = s.spacing or (geometry.spacing if geometry is not None else None)
            in_mm = in_mm or spacing is not None
            metrics.update(pred, target, probs.numpy() if vessel else None, fov, spacing=spacing, id=s.id)
            suffix = ".nii.gz" if pred.ndim == 3 else ".png"
            name = file_name(s.id)
            if save_predictions:
                save_mask(pred, out / "predictions" / f"{name}{suffix}", num_classes, s.spacing, geometry=geometry)
            if save_probabilities:
                save_probabilities_file(probs.numpy(), out / "probabilities" / name, geometry)
        rows = metrics.rows()
        if overlays and max_overlays > 0:
            cases = overlay_cases([float(r["dice_mean"]) for r in rows], max_overlays)
            names = SafeNames()
            listed = []
            for i, case in cases:
                s = samples[i]
                image = convert_channels(load_sample_image(s), int(info["in_channels"]), s.image)
                pred = predict_probs(unet, image, info, dev).argmax(0).numpy()
                d = float(rows[i]["dice_mean"])
                path = out / "overlays" / f"{case}_{names(s.id)}.png"
                save_overlay(image, pred, load_sample_mask(s, num_classes), path, class_names, title=f"{case}: {s.id}, Dice {d:.3f}")
                listed.append({"case": case, "id": s.id, "dice_mean": d, "file": path.name})
            atomic_write_text(out / "overlays" / "cases.json", json.dumps(listed, indent=2))
        buf = io.StringIO()
        writer = csv.DictWriter(buf, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows([{k: (f"{v:.6g}" if isinstance(v, float) else v) for k, v in r.items()} for r in rows])
        atomic_write_text(out / "per_image.csv", buf.getvalue())
        summary = {"run": str(run_dir), "model": str(kept_model_dir(run_dir)), "data": str(data), "split": split, "checkpoint": checkpoint, "n_images": len(rows),
                   "class_names": class_names, "metrics": metrics.summary(),
                   "hd95_unit": "mm" if in_mm else "pixels"}
        atomic_write_text(out / "summary.json", json.dumps(summary, indent=2, default=_json_default))
    except BaseException:
        staged.abandon()
        raise
    out = staged.commit()
    if split == "test" and str(data) == str(run_cfg.get("data")) and not max_images:
        _record_test_score(run_dir, summary)  # the run's card says which model is in use (the guard's choice)
    summary["out"] = str(out)
    return summary


def _record_test_score(run_dir: Path, summary: dict[str, Any]) -> None:
    """The run's model card gets its test Dice (model.json and MODEL.md, localdisc's own files)."""

    path = run_dir / "model.json"
    try:
        info = json.loads(path.read_text())
    except (OSError, ValueError):
        return
    dice = summary["metrics"].get("dice_mean", {}).get("mean")
    info.update(test_dice=dice if dice is None or math.isfinite(dice) else None, test_images=summary["n_images"])
    atomic_write_text(path, json.dumps(info, indent=2))
    atomic_write_text(run_dir / "MODEL.md", model_card_markdown(info))


def overlay_cases(dice: list[float], k: int) -> list[tuple[int, str]]:
    """Which images to draw: [(index, case)] for the worst, median and best by ``dice`` (NaN
    last), then up to ``k`` in all evenly spread over the ranking (cases ``rank03`` ...)."""
    order = sorted(range(len(dice)), key=lambda i: (math.isnan(dice[i]), dice[i]))
    finite = [i for i in order if not math.isnan(dice[i])] or order
    if not finite or k <= 0:
        return []
    picks = [(finite[0], "worst"), (finite[-1], "best"), (finite[len(finite) // 2], "median")]  # with 2 images the median is dropped
    chosen: list[tuple[int, str]] = []
    for i, case in picks:
        if i not in [c for c, _ in chosen]:
            chosen.append((i, case))
    chosen = sorted(chosen[:k], key=lambda t: ("worst", "median", "best").index(t[1]))  # k = 2: worst and best
    rank = {i: r for r, i in enumerate(finite)}
    rest = [i for i in finite if i not in [c for c, _ in chosen]]
    extra = max(0, min(k - len(chosen), len(rest)))
    for j in range(extra):  # evenly spread over the remaining ranking
        i = rest[round((j + 0.5) * len(rest) / extra - 0.5)]
        chosen.append((i, f"rank{rank[i] + 1:03d}"))
    return chosen[:k]


def _json_default(v: Any) -> Any:
    return None if isinstance(v, float) and math.isnan(v) else str(v)


def format_summary(summary: dict[str, Any], keys: tuple[str, ...] = ("dice", "hd95")) -> str:
    """Short text table: one line per foreground class, mean +- std of each metric kind."""
    m = summary["metrics"]
    unit = {"hd95": f"hd95 ({summary.get('hd95_unit', 'pixels')})"}
    lines = [f"{'class':<22}" + "".join(f"{unit.get(k, k):>18}" for k in keys)]
    for name in summary["class_names"][1:]:
        cells = []
        for k in keys:
            e = m.get(f"{k}_{name}", {})
            cells.append(f"{e.get('mean', math.nan):8.3f} +- {e.get('std', math.nan):6.3f}")
        lines.append(f"{name:<22}" + "".join(f"{c:>18}" for c in cells))
    for extra in ("auc", "accuracy"):
        if extra in m:
            lines.append(f"{extra:<22}{m[extra]['mean']:8.3f} +- {m[extra]['std']:6.3f}")
    return "\n".join(lines)
