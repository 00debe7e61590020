"""Supervised fine-tuning of the U-Net (docs/method.md): one readable loop.

``finetune(cfg) -> run_dir``: labeled images -> (optionally) weights transferred from a
pretraining run -> foreground-biased random patches + augmentation -> DiceCE (+ PDCR) ->
Adam with a cosine or constant schedule -> model selection on validation Dice.

Splits, label budgets and patch sampling live in :mod:`.finetune_data` (honest protocol:
validation is carved from train only, the budget is a nested subset by ``seed``); the network,
its loss module, prediction and ``load_finetuned`` live in :mod:`.finetune_model`. Their public
names are re-exported here.

Run folder: config.yaml, metrics.csv (train loss, val Dice per class), ckpt-*/ (atomic, with
optimizer/scheduler/RNG state), model.safetensors (last), best.safetensors (best validation
mean foreground Dice), model.json (network + classes + sizes), splits.json, transfer.json.
``--resume`` continues a killed run and ends with the same weights as an uninterrupted run.
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import DataLoader

from .. import __version__
from ..config import to_dict
from ..data.datasets import stack_items
from ..data.resolution import auto_image_size, check_image_size
from ..errors import ConfigError, TrainingError
from ..nets import UNet, UNetConfig
from ..nets.transfer import load_backbone_config
from ..nets.unet import check_widths
from ..runtime import distributed as dist
from ..runtime.checkpoint import (
    assert_finite_weights,
    atomic_write_text,
    load_weights,
    resume_from_checkpoint,
    rng_state,
    save_checkpoint,
    save_weights,
)
from ..runtime.memory import plan_patch
from ..runtime.model_card import INTENSITY_RULE, model_card_markdown
from ..runtime.outputs import check_not_inputs, data_inputs
from ..runtime.progress import TrainingLog, count_parameters, describe_threads
from ..runtime.provenance import git_commit
from ..runtime.run import Run, check_resume_options
from ..runtime.sampling import StepBatchSampler
from ..utils import pick_device, seed_everything
from .augment import AugmentConfig, augment_batch
from .finetune_config import FinetuneConfig
from .finetune_data import LabeledData, assigned_splits, finetune_samples, load_labeled_data, sample_patches
from .finetune_model import Supervised, build_network, build_optimizer, evaluate_dataset, load_finetuned, predict_logits


def freeze_norm_statistics(module: torch.nn.Module) -> None:
    """Put every BatchNorm/InstanceNorm of ``module`` in eval mode: running statistics stay fixed."""
    for m in module.modules():
        if isinstance(m, (torch.nn.modules.batchnorm._BatchNorm, torch.nn.modules.instancenorm._InstanceNorm)):
            m.eval()


def resolve_transfer_protocol(cfg: FinetuneConfig) -> None:
    """Fill the automatic (-1) PDCR temperature in place.

    The transfer protocol's defaults (every layer from step 0 at one lr) were chosen on
    VALIDATION Dice in the cpu benchmarks (PH2 and chest X-rays, 3 seeds): the decoder warm-up
    with a 10x slower encoder (``--freeze-encoder-steps STEPS/2 --encoder-lr-scale 0.1``) did not
    beat it there. Both stay options; a frozen random encoder only handicaps random init."""
    if cfg.pdcr_tau < 0:
        cfg.pdcr_tau = 0.5 if len(cfg.image_size) == 3 else 1.0  # finetune() calls this once the image size is known


def _network_widths(cfg: FinetuneConfig) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """(encoder, decoder) widths of the network to train: --init's when given (they decide the
    U-Net's total stride and its memory), else the options'."""
    if cfg.init:
        try:
            unet = load_backbone_config(cfg.init)[0]
            return tuple(unet.encoder_channels), tuple(unet.decoder_channels)
        except Exception:  # a broken --init is reported where it is loaded
            pass
    return tuple(cfg.encoder_channels), tuple(cfg.decoder_channels)


def _seconds_per_step(cfg: FinetuneConfig, enc: tuple[int, ...], dec: tuple[int, ...], device) -> str:
    """One forward + backward of a batch at the training shape, timed (for --dry-run)."""
    shape = tuple(cfg.patch_size or cfg.image_size)
    unet = UNet(UNetConfig(spatial_dims=len(shape), in_channels=cfg.in_channels or 1, encoder_channels=enc, decoder_channels=dec, norm=cfg.norm), out_channels=2).to(device)
    x = torch.rand(cfg.batch_size, cfg.in_channels or 1, *shape, device=device)
    start = time.perf_counter()
    unet(x).float().mean().backward()
    return f"about {time.perf_counter() - start:.1f} s per step here"


def _validate(cfg: FinetuneConfig) -> None:
    if len(cfg.image_size) not in (0, 2, 3):
        raise ConfigError(f"--image-size needs 2 (H W) or 3 (D H W) numbers, got {list(cfg.image_size)}")
    if cfg.image_size and cfg.patch_size and (len(cfg.patch_size) != len(cfg.image_size) or any(p > s for p, s in zip(cfg.patch_size, cfg.image_size))):
        raise ConfigError(f"--patch-size {list(cfg.patch_size)} must have as many numbers as --image-size {list(cfg.image_size)} and not exceed it")
    if cfg.transfer not in ("encoder", "encoder+decoder"):
        raise ConfigError(f"--transfer must be encoder or encoder+decoder, got {cfg.transfer!r}")
    if cfg.schedule not in ("cosine", "constant"):
        raise ConfigError(f"--schedule must be cosine or constant, got {cfg.schedule!r}")
    if cfg.steps < 1 or cfg.batch_size < 1:
        raise ConfigError("--steps and --batch-size must be >= 1")
    if cfg.pdcr_pairs not in ("image", "batch"):
        raise ConfigError(f"--pdcr-pairs must be image or batch, got {cfg.pdcr_pairs!r}")
    if cfg.freeze_encoder_steps < 0 or cfg.encoder_lr_scale < 0:
        raise ConfigError("--freeze-encoder-steps and --encoder-lr-scale must be >= 0")


# ---------------------------------------------------------------- loop


@dataclass
class _Training:
    """What the fine-tuning loop's recurring steps (validate, checkpoint, train mode) share."""

    cfg: FinetuneConfig
    run: Run
    env: Any
    device: torch.device
    data: LabeledData
    unet: UNet
    model: torch.nn.Module
    optimizer: Any
    scheduler: Any
    best: dict[str, Any]

    def validate(self, done: int) -> dict[str, float]:
        """Validation Dice; the best weights so far go to best.safetensors."""
        if self.data.val is None or not self.env.is_main:
            return {}
        scores = evaluate_dataset(self.unet, self.data.val, self.data.num_classes, self.data.class_names, self.cfg, self.device)
        if scores["val_dice"] > self.best["dice"]:
            self.best.update(dice=scores["val_dice"], step=done)
            assert_finite_weights(self.unet, done, self.run.path)
            save_weights(self.unet.state_dict(), self.run.path / "best.safetensors", metadata={"step": str(done)})
        return scores

    def checkpoint(self, done: int) -> None:
        if self.env.is_main:
            assert_finite_weights(self.model, done, self.run.path)
            state = {"optimizer": self.optimizer.state_dict(), "scheduler": self.scheduler.state_dict(), "rng": rng_state()}
            save_checkpoint(self.run.path, done, self.model.state_dict(), state, meta={"world": self.env.world, "best": self.best})

    def enter_train_mode(self, next_step: int) -> None:
        self.model.train()
        if next_step < self.cfg.freeze_encoder_steps:  # a frozen encoder keeps its pretrained BN statistics too
            freeze_norm_statistics(self.unet.encoder)


def finetune(cfg: FinetuneConfig) -> Path:
    """Supervised fine-tuning into ``cfg.out``: data checked, run folder begun, network built
    (transferred from ``cfg.init``), then the training loop with validation, checkpoints and
    --resume; ends with model.safetensors, best.safetensors and the model card."""
    cfg = replace(cfg)  # automatic values are filled into a copy: the caller's config stays as given
    _validate(cfg)
    typed = to_dict(cfg)  # as given, before automatic values are filled in
    if cfg.resume and (Path(cfg.out) / "config.yaml").is_file():
        check_resume_options(Path(cfg.out), typed)  # before the data are read: a wrong resume fails at once
    env = dist.init(cfg.device)
    device = pick_device(cfg.device) if cfg.device != "auto" else env.device
    seed_everything(cfg.seed)

    # Data first: a bad file must fail before anything is written.
    everything: list = []
    parts = finetune_samples(cfg, everything)
    enc, dec = _network_widths(cfg)
    check_widths(enc, dec)
    check_image_size(cfg.image_size, everything[0].image)
    automatic = not cfg.image_size and not cfg.patch_size
    if not cfg.image_size:  # the dataset's resolution (all its images), the same at every label budget
        cfg.image_size = auto_image_size([s.image for s in everything], cfg.spacing, multiple=2 ** (len(enc) - 1))
        _validate(cfg)  # the patch size against the size chosen
    cfg.patch_size, plan = plan_patch(cfg.image_size, cfg.patch_size, automatic, 1, cfg.batch_size, enc, dec, device, 2 ** (len(enc) - 1))
    if cfg.dry_run:
        print(f"finetune plan: {len(parts['train'])} labeled training images, {len(parts['val'])} validation, {len(parts['test'])} test "
              f"from {cfg.data}; {plan}; {cfg.steps} steps; {_seconds_per_step(cfg, enc, dec, device)} -> {cfg.out} (dry run: nothing written)")
        return Path(cfg.out)
    resolve_transfer_protocol(cfg)
    data = load_labeled_data(cfg, parts)

    run = Run(cfg.out, resume=cfg.resume, overwrite=cfg.overwrite, is_writer=env.is_main,
              inputs=[*data_inputs(cfg.data), cfg.init])  # --resume options were checked above, before the data
    try:  # outputs, the network and --init are validated before an existing run is touched
        check_not_inputs(cfg.out, (f for part in parts.values() for s in part for f in (s.image, s.mask, s.fov)))
        unet, pdcr, transferred = build_network(cfg, data)
    except BaseException:
        run.abandon()
        raise
    run.save_config(cfg, typed=typed)
    if cfg.tensorboard:
        run.use_tensorboard()
    if cfg.init:
        run.write_json("transfer.json", {"init": str(cfg.init), "parts": cfg.transfer, "freeze_encoder_steps": cfg.freeze_encoder_steps,
                                         "encoder_lr_scale": cfg.encoder_lr_scale, "warmup_restart_from_best": bool(cfg.freeze_encoder_steps and parts["val"]),
                                         "transferred": transferred, "not_transferred": sorted(set(unet.state_dict()) - set(transferred))})
    model = Supervised(unet, pdcr, cfg.pdcr_weight).to(device)
    optimizer, scheduler, encoder_params = build_optimizer(cfg, model, unet)
    run.write_json("splits.json", {k: [s.id for s in v] for k, v in parts.items()})
    log = TrainingLog(run.path if env.is_main else None, "finetune", cfg.steps)
    init = f"{cfg.transfer} from {cfg.init}" + (f", encoder frozen for {cfg.freeze_encoder_steps} steps" if cfg.freeze_encoder_steps else "") if cfg.init else "random init"
    log.say(f"finetune: {len(parts['train'])} labeled training images, {len(parts['val'])} validation, {len(parts['test'])} test from {cfg.data}; "
            f"{data.num_classes} classes ({', '.join(data.class_names)}), {data.channels} channel(s), {'x'.join(map(str, cfg.image_size))}; {init}; "
            f"{count_parameters(unet)}; {describe_threads(device, env.world)}; {cfg.steps} steps of {cfg.batch_size} -> {run.path}")
    log.say(f"plan: {plan}")

    meta = resume_from_checkpoint(run, cfg.resume, model, optimizer, scheduler, env.world, env.rank, log)
    start, best = (int(meta["step"]), meta.get("best", {"dice": -1.0, "step": 0})) if meta else (0, {"dice": -1.0, "step": 0})
    training = _Training(cfg, run, env, device, data, unet, model, optimizer, scheduler, best)
    done, seconds = _train_loop(training, start, encoder_params, log)
    log.close()
    if env.is_main:
        _finish(training, done, transferred, seconds, log)
    dist.barrier(env)
    run.finish()
    return run.path


def _train_loop(t: _Training, start: int, encoder_params: list, log: TrainingLog) -> tuple[int, float]:
    """Steps ``start`` .. ``cfg.steps`` (or until ``max_minutes``); returns (steps done, seconds)."""
    cfg, env, device, unet, run = t.cfg, t.env, t.device, t.unet, t.run
    ddp_model = dist.wrap(t.model, env)
    loader = DataLoader(t.data.train, batch_sampler=StepBatchSampler(len(t.data.train), cfg.batch_size, cfg.seed, start, cfg.steps, env.rank, env.world),
                        collate_fn=stack_items, num_workers=cfg.workers, persistent_workers=cfg.workers > 0,
                        generator=torch.Generator().manual_seed(cfg.seed))  # own generator: iterating must not draw from the global RNG (resume)
    autocast = dist.autocast_context(cfg.precision, device)
    aug_cfg = AugmentConfig()
    stop_after = int(os.environ.get("LOCALDISC_STOP_AFTER_STEP", 0))  # test hook: simulate a kill
    nan_at = int(os.environ.get("LOCALDISC_NAN_AT_STEP", 0))  # test hook: inject a NaN loss
    t.enter_train_mode(start)
    t0, seen, done = time.time(), 0, start
    last_checkpoint = t0
    for step, batch in enumerate(loader, start=start):
        images = batch["image"].to(device, non_blocking=True)
        labels = batch["mask"].to(device, non_blocking=True)
        images, labels = sample_patches(images, labels, cfg.patch_size, cfg.patch_foreground)
        if cfg.augment:
            images, labels = augment_batch(images, labels, aug_cfg, t.data.flip_pairs)
        if step == cfg.freeze_encoder_steps and step > 0:
            unet.encoder.train()
            if env.is_main and t.best["step"] > 0:  # go on from the warm-up's best decoder (reference protocol)
                unet.load_state_dict(load_weights(run.path / "best.safetensors"))
            dist.broadcast_state(unet)
        with autocast():
            loss, logs = ddp_model(images, labels)
        if nan_at and step + 1 == nan_at:
            loss = loss * float("nan")
        if not torch.isfinite(loss.detach()):
            raise TrainingError(f"loss became {float(loss.detach())} at step {step + 1} (run {run.path}); lower the learning rate or check the input data. The last checkpoint is kept.")
        t.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if step < cfg.freeze_encoder_steps:
            for p in encoder_params:  # Adam skips parameters without a gradient
                p.grad = None
        t.optimizer.step()
        t.scheduler.step()
        done = step + 1
        seen += images.shape[0] * env.world
        out_of_time = bool(cfg.max_minutes) and time.time() - t0 > cfg.max_minutes * 60
        row: dict[str, float] = {}
        if done % cfg.log_every == 0 or done == cfg.steps or out_of_time:
            row.update(loss=float(loss.detach()), lr=t.scheduler.get_last_lr()[0], images_per_s=seen / max(time.time() - t0, 1e-9), **{k: float(v) for k, v in logs.items()})
        if (cfg.eval_every and done % cfg.eval_every == 0) or done == cfg.steps or out_of_time:
            t.model.eval()
            row.update(t.validate(done))
            t.enter_train_mode(done)
        if row:
            run.log(done, **row)
        log.step(done, images.shape[0] * env.world, **{k: v for k, v in row.items() if k != "images_per_s"})
        due = done % cfg.log_every == 0 and dist.minutes_passed(cfg.checkpoint_minutes, last_checkpoint)  # asked at logged steps only: a collective under DDP
        if done % cfg.checkpoint_every == 0 or done == cfg.steps or out_of_time or due:
            t.checkpoint(done)
            last_checkpoint = time.time()
        dist.barrier(env)
        if stop_after and done == stop_after:
            raise KeyboardInterrupt(f"LOCALDISC_STOP_AFTER_STEP={stop_after}")
        if out_of_time:
            log.say(f"time limit of {cfg.max_minutes} min reached at step {done}")
            break
    return done, time.time() - t0


def _finish(t: _Training, done: int, transferred: list[str], seconds: float, log: TrainingLog) -> None:
    """Final and best weights, model.json and MODEL.md (the model card)."""
    cfg, run, data, best = t.cfg, t.run, t.data, t.best
    assert_finite_weights(t.unet, done, run.path)
    save_weights(t.unet.state_dict(), run.path / "model.safetensors", metadata={"step": str(done)})
    if data.val is None or not (run.path / "best.safetensors").is_file():
        save_weights(t.unet.state_dict(), run.path / "best.safetensors", metadata={"step": str(done)})
        best.update(step=done)
    info = {"unet": asdict(t.unet.config), "num_classes": data.num_classes, "class_names": data.class_names, "image_size": list(cfg.image_size),
            "patch_size": list(cfg.patch_size), "in_channels": data.channels, "task": data.task,
            "flip_pairs": [list(p) for p in data.flip_pairs], "init": cfg.init, "transferred_tensors": len(transferred),
            "steps_done": done, "best_step": best["step"], "best_val_dice": best["dice"] if data.val is not None else None,
            "n_train": len(data.parts["train"]), "n_val": len(data.parts["val"]), "n_test": len(data.parts["test"]), "run_name": run.path.name,
            "localdisc_version": __version__, "commit": git_commit(), "data": str(cfg.data), "labels": cfg.labels, "intensity": INTENSITY_RULE}
    atomic_write_text(run.path / "model.json", json.dumps(info, indent=2))
    atomic_write_text(run.path / "MODEL.md", model_card_markdown(info))
    chosen = f"best validation Dice {best['dice']:.4f} at step {best['step']}" if data.val is not None and best["dice"] >= 0 else "no validation: the last step is kept"
    log.say(f"finetune: finished {done} steps in {seconds / 60:.1f} min; {chosen}")


__all__ = ["FinetuneConfig", "finetune", "finetune_samples", "assigned_splits", "load_finetuned",
           "predict_logits", "evaluate_dataset", "sample_patches", "Supervised", "to_dict"]
