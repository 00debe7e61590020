"""Never worse than random init by default: the guard of ``localdisc finetune --init RUN``.

Pretraining helps on some modalities and hurts on others (docs/results.md, "Where pretraining
helps"), and a user cannot know in advance which case their data is. So fine-tuning from a
pretraining run also fine-tunes a *twin* from random init, with the same labeled images, seed,
steps, network and validation images, into ``OUT/random-init/``, and keeps whichever reaches the
higher best validation Dice (pretrained on a tie). The decision goes to ``OUT/guard.json``;
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

from ..config import to_dict
from ..errors import ConfigError
from ..runtime import distributed as dist
from ..runtime.checkpoint import atomic_write_text
from ..runtime.model_card import model_card_markdown
from ..runtime.outputs import is_marked, marker_kind
from ..runtime.run import check_resume_options
from ..train.finetune import FinetuneConfig, finetune
from ..train.finetune_model import GUARD_FILE, TWIN

NEAR_TIE = 0.01  # validation Dice: a smaller margin is reported as a tie in words (the rule itself stays strict)
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


def check_twin_folder(cfg: FinetuneConfig) -> None:
    """Before any training: OUT/random-init/ is new or localdisc's own twin run, so the guard
    never fails after the first run or writes into a user's folder."""
    twin = Path(cfg.out) / TWIN
    if twin.exists() and not (twin.is_dir() and is_marked(twin) and marker_kind(twin) == "run"):
        raise ConfigError(f"{twin}: the guard fine-tunes its random-init twin there, but it holds something localdisc did not write; "
                          "move it, or pass --guard false")


def _twin_resumes(cfg: FinetuneConfig, twin_cfg: FinetuneConfig, log: Callable[[str], Any]) -> FinetuneConfig:
    """A twin left from before an --overwrite (other options) is trained again, not resumed."""
    folder = Path(twin_cfg.out)
    if not (cfg.resume and (folder / "config.yaml").is_file()):
        return twin_cfg
    try:
        check_resume_options(folder, to_dict(twin_cfg))
        return twin_cfg
    except ConfigError:
        log(f"guard: the random-init twin in {folder} was made with other options (before an --overwrite): training it again")
        return replace(twin_cfg, resume=False, overwrite=True)


def guarded_finetune(cfg: FinetuneConfig, log: Callable[[str], Any] = print) -> Path:
    """``finetune(cfg)``, then (with ``cfg.init`` and ``cfg.guard``) its random-init twin and the
    choice between them on validation Dice. Returns the run folder."""
    guarded = bool(cfg.init and cfg.guard)
    if guarded and not cfg.dry_run:
        check_twin_folder(cfg)
    run_dir = finetune(cfg)
    if cfg.dry_run and guarded:
        log("guard: the random-init twin doubles the fine-tuning time (--guard false skips it)")
    if cfg.dry_run or not guarded:
        return run_dir
    info = json.loads((run_dir / "model.json").read_text())
    if not info.get("n_val") or info.get("best_val_dice") is None:
        log("guard: no validation images, so pretrained and random init cannot be compared on this run; "
            "`localdisc verdict` compares them by cross-validation over your labeled images")
        return run_dir
    log(f"guard: fine-tuning the same labeled images from random init too -> {run_dir / TWIN} (--guard false skips this)")
    twin_dir = finetune(_twin_resumes(cfg, twin_config(cfg, run_dir, info), log))
    if not dist.init(cfg.device).is_main:  # under torchrun every rank trains both runs; the first one decides and writes
        return run_dir
    twin = json.loads((twin_dir / "model.json").read_text())
    kept = choose(info["best_val_dice"], twin["best_val_dice"])
    decision = {"kept": kept, "n_val": info["n_val"], "pretrained": {"init": str(cfg.init), "best_val_dice": info["best_val_dice"]},
                "random_init": {"run": TWIN, "best_val_dice": twin["best_val_dice"]},
                "rule": "random init is kept only when its best validation Dice is strictly higher"}
    atomic_write_text(run_dir / GUARD_FILE, json.dumps(decision, indent=2))
    pre, rnd = info["best_val_dice"], twin["best_val_dice"]
    info["guard"] = {"kept": kept, "pretrained_val_dice": pre, "random_val_dice": rnd}
    atomic_write_text(run_dir / "model.json", json.dumps(info, indent=2))
    atomic_write_text(run_dir / "MODEL.md", model_card_markdown(info))
    scores = f"validation Dice {pre:.4f} from {cfg.init}, {rnd:.4f} from random init, on {info['n_val']} validation images"
    if kept != TWIN:
        log(f"guard: the pretrained model is kept ({scores})")
    elif rnd - pre < NEAR_TIE:
        log(f"guard: random init is kept, by a hair ({scores}): on these data pretraining made no difference you could measure here")
    else:
        log(f"guard: pretraining did NOT help here ({scores}): this run's model is the random-init one ({twin_dir}); "
            "for these data, fine-tune without --init")
    return run_dir


__all__ = ["choose", "twin_config", "check_twin_folder", "guarded_finetune", "TWIN", "GUARD_FILE"]
