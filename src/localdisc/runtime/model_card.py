"""The model card: what a fine-tuned model is, in ``model.json`` and a readable ``MODEL.md``.

``model.json`` holds what a program needs to run the model (network, classes, input size, patch,
channels, intensity rule) and what a person needs to trust it (localdisc version and commit,
data, label budget, initialization, validation and test scores). Every export carries the same
fields (ONNX metadata, MONAI bundle metadata, the ``.json`` beside ``.safetensors``).
"""

from __future__ import annotations

import json
import math
from typing import Any

INTENSITY_RULE = ("8-bit images divided by 255; everything else clipped to its own 0.5th-99.5th percentiles and mapped to [0, 1] "
                  "(localdisc.data.io); then resized to image_size (a sliding window of patch_size where set)")


def card_fields(info: dict[str, Any]) -> dict[str, str]:
    """Flat string fields for metadata stores (ONNX metadata_props, bundle metadata)."""
    keys = ("localdisc_version", "commit", "data", "class_names", "in_channels", "image_size", "patch_size", "intensity", "labels",
            "n_train", "init", "best_val_dice", "test_dice", "task")
    return {k: json.dumps(info[k]) if not isinstance(info[k], str) else info[k] for k in keys if info.get(k) is not None}


def model_card_markdown(info: dict[str, Any]) -> str:
    """MODEL.md: the card as a person reads it."""
    classes = info.get("class_names") or []
    size = "x".join(map(str, info.get("image_size") or []))
    patch = "x".join(map(str, info.get("patch_size") or []))
    test = info.get("test_dice")
    val = info.get("best_val_dice")
    lines = [
        f"# Model card: {info.get('run_name', 'localdisc segmentation model')}",
        "",
        f"- **What it segments**: {', '.join(classes[1:]) or '?'} (classes: {', '.join(f'{i} = {c}' for i, c in enumerate(classes))})",
        f"- **Trained on**: `{info.get('data', '?')}` with {info.get('n_train', '?')} labeled image(s) (`--labels {info.get('labels', '?')}`), "
        f"{info.get('n_val', 0)} validation image(s) carved from the training split",
        f"- **Initialization**: {info.get('init') or 'random'}",
        *_guard_lines(info.get("guard")),
        f"- **Input**: {info.get('in_channels', '?')} channel(s), resized to {size}" + (f", {patch} patches (sliding window)" if patch else ""),
        f"- **Intensities**: {info.get('intensity', INTENSITY_RULE)}",
        f"- **Validation Dice** (checkpoint selection): {_num(val)} at step {info.get('best_step', '?')} of {info.get('steps_done', '?')}",
        f"- **Test Dice**: {_num(test)}" + ("" if test is not None else " (run `localdisc evaluate RUN` to add it)"),
        f"- **localdisc** {info.get('localdisc_version', '?')}, commit `{info.get('commit', '?')}`",
        "",
        "Use: `localdisc predict RUN --data NEW_IMAGES --out MASKS` (or `localdisc.load_model(RUN).segment(array)`).",
        "Limits: the scores hold for images like the training data; check a few predictions on yours before relying on it.",
    ]
    return "\n".join(lines) + "\n"


def _guard_lines(guard: dict[str, Any] | None) -> list[str]:
    """The guard's choice (``finetune --init``), when it ran: which model predict/evaluate/export use."""
    if not guard:
        return []
    scores = f"validation Dice {_num(guard.get('pretrained_val_dice'))} from this initialization, {_num(guard.get('random_val_dice'))} from random init"
    if guard.get("kept") == "random-init":
        return [f"- **Model in use: the random-init twin** (`random-init/`; the guard: {scores}). The validation score below is the "
                "pretrained model's; predict, evaluate and export use the twin"]
    return [f"- **Guard**: the pretrained model is kept ({scores}; the twin is in `random-init/`)"]


def _num(v: Any) -> str:
    return f"{float(v):.3f}" if isinstance(v, (int, float)) and math.isfinite(float(v)) and float(v) >= 0 else "n/a"


__all__ = ["INTENSITY_RULE", "card_fields", "model_card_markdown"]
