"""Never worse than random init by default: the guard of ``localdisc finetune --init RUN``.

Pretraining helps on some modalities and hurts on others (docs/results.md, "Where pretraining
helps"), and a user cannot know in advance which case their data is. So fine-tuning from a
pretraining run also fine-tunes a *twin* from random init, with the same labeled images, seed,
steps, network and validation images, into ``RUN/random-init/``, and keeps whichever reaches the
higher best validation Dice (pretrained on a tie). The decision goes to ``RUN/guard.json``;
``load_finetuned`` (and so predict, evaluate and export) then loads the kept model. It costs a
second fine-tuning run, never a second pretraining run; ``--guard false`` skips it.

The rule is the one the benchmark reports as ``ld-guarded`` (:func:`choose`), computed there from
its LD and random-init cells, so the guard's effect on the *test* images is measured, not assumed.
"""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path
from typing import Any, Callable

from ..runtime.checkpoint import atomic_write_text
from ..train.finetune import FinetuneConfig, finetune
from ..train.finetune_model import GUARD_FILE, TWIN

RANDOM_DEFAULTS = {"freeze_encoder_steps": 0, "encoder_lr_scale": 1.0}  # transfer-only options: plain training from random init


def choose(pretrained_val: float | None, random_val: float | None) -> str:
    """"pretrained" or "random-init": random init only when its validation Dice is strictly higher."""
    if pretrained_val is None or random_val is None:
        return "pretrained"
    return TWIN if random_val > pretrained_val else "pretrained"


def twin_config(cfg: FinetuneConfig, run_dir: Path, info: dict[str, Any]) -> FinetuneConfig:
    """The random-init twin of a fine-tuning run: same data, labels, seed, steps, add-ons and
    network widths (those of the pretraining run), no --init."""
    unet = info["unet"]
    return replace(cfg, init="", out=str(run_dir / TWIN), encoder_channels=tuple(unet["encoder_channels"]),
                   decoder_channels=tuple(unet["decoder_channels"]), norm=unet["norm"], image_size=tuple(info["image_size"]),
                   patch_size=tuple(info["patch_size"]), **RANDOM_DEFAULTS)


def guarded_finetune(cfg: FinetuneConfig, log: Callable[[str], Any] = print) -> Path:
    """``finetune(cfg)``, then (with ``cfg.init`` and ``cfg.guard``) its random-init twin and the
    choice between them on validation Dice. Returns the run folder."""
    run_dir = finetune(cfg)
    if cfg.dry_run or not cfg.init or not cfg.guard:
        return run_dir
    info = json.loads((run_dir / "model.json").read_text())
    if not info.get("n_val") or info.get("best_val_dice") is None:
        log("guard: no validation images, so pretrained and random init cannot be compared on this run; "
            "`localdisc verdict` compares them by cross-validation over your labeled images")
        return run_dir
    log(f"guard: fine-tuning the same labeled images from random init too -> {run_dir / TWIN} (--guard false skips this)")
    twin_dir = finetune(twin_config(cfg, run_dir, info))
    twin = json.loads((twin_dir / "model.json").read_text())
    kept = choose(info["best_val_dice"], twin["best_val_dice"])
    decision = {"kept": kept, "n_val": info["n_val"], "pretrained": {"init": str(cfg.init), "best_val_dice": info["best_val_dice"]},
                "random_init": {"run": TWIN, "best_val_dice": twin["best_val_dice"]},
                "rule": "random init is kept only when its best validation Dice is strictly higher"}
    atomic_write_text(run_dir / GUARD_FILE, json.dumps(decision, indent=2))
    pre, rnd = info["best_val_dice"], twin["best_val_dice"]
    if kept == TWIN:
        log(f"guard: pretraining did NOT help here: validation Dice {pre:.3f} from {cfg.init} vs {rnd:.3f} from random init "
            f"on {info['n_val']} validation images; this run's model is the random-init one ({twin_dir}); "
            "for these data, fine-tune without --init")
    else:
        log(f"guard: pretrained init kept: validation Dice {pre:.3f} vs {rnd:.3f} from random init on {info['n_val']} validation images")
    return run_dir


__all__ = ["choose", "twin_config", "guarded_finetune", "TWIN", "GUARD_FILE"]
