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
import math
import os
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path

import torch
from torch.utils.data import DataLoader

from .. import __version__
from ..config import field, to_dict
from ..data.datasets import ImageDataset, num_channels_of, require_foreground, stack_items
from ..data.resolution import auto_image_size, check_image_size
from ..errors import ConfigError, TrainingError
from ..nets import UNet, UNetConfig
from ..nets.unet import check_widths
from ..runtime.memory import plan_patch
from ..runtime.model_card import INTENSITY_RULE, model_card_markdown
from ..runtime.outputs import check_not_inputs, data_inputs
from ..runtime.provenance import git_commit
from ..utils import pick_device, seed_everything
from .augment import AugmentConfig, augment_batch
from .checkpoint import assert_finite_weights, atomic_write_text, latest_checkpoint, load_checkpoint, load_weights, rng_state, save_checkpoint, save_weights, set_rng_state
from .finetune_data import assigned_splits, finetune_samples, infer_num_classes, sample_patches
from .finetune_model import Supervised, build_unet, evaluate_dataset, load_finetuned, predict_logits
from .progress import TrainingLog, count_parameters, describe_threads
from .run import Run, check_resume_options
from .sampling import StepBatchSampler


@dataclass
class FinetuneConfig:
    data: str = field("synthetic-fundus", "labeled images: folder (images/ + masks/), manifest CSV, or layout spec (ph2:/path, cxr:/path, drive:/path, synthetic-fundus, ...)")
    out: str = field("runs/finetune", "run folder to create (or continue with --resume)")
    seed: int = field(0, "seed for the label subset, weight init, batches and augmentation")
    split_seed: int = field(0, "seed for assigning train/test (data without a split) and carving validation; keep it fixed when comparing runs")
    test_fraction: float = field(0.2, "fraction of images held out as test when the data defines no split")
    labels: float = field(0, "label budget: a count of labeled training images (e.g. 4) or a fraction (e.g. 0.25); 0 = all")
    val_fraction: float = field(0.2, "validation images carved from the training split (fraction or count; never from test); 0 = none (last step is kept)")
    steps: int = field(2000, "optimizer steps")
    batch_size: int = field(4, "patches per step (global, across processes)")
    lr: float = field(1e-3, "Adam learning rate")
    weight_decay: float = field(1e-5, "Adam weight decay")
    schedule: str = field("cosine", "learning-rate schedule", choices=("cosine", "constant"))
    image_size: tuple[int, ...] = field((), lengths=(0, 2, 3), help="images/volumes are resized to this (H W or D H W) for training and prediction; default: the training images' median size, never upsampled, the longer side at most 1024 px (2D) or 256 voxels (3D)")
    spacing: tuple[float, ...] = field((), lengths=(0, 3), help="volumes: resample to about this voxel size (mm, D H W) when --image-size is not given")
    patch_size: tuple[int, ...] = field((), lengths=(0, 2, 3), help="random training patches of this size, biased toward foreground; prediction slides a window of this size; empty = whole image")
    patch_foreground: float = field(0.5, "probability that a training patch is centred on a foreground pixel")
    num_classes: int = field(0, "classes including background; 0 = from class names or the largest mask value")
    in_channels: int = field(0, "input channels; 0 = from the data")
    init: str = field("", "pretraining run folder to initialize from (its backbone.safetensors); empty = random init")
    transfer: str = field("encoder", "what to transfer from --init", choices=("encoder", "encoder+decoder"))
    freeze_encoder_steps: int = field(0, "decoder warm-up: keep the encoder weights and its normalization statistics fixed for the first N steps, then go on from the warm-up's best validation checkpoint (the reference transfer script's protocol; e.g. half of --steps). 0 = every layer trains from step 0, which did as well or better on validation in the cpu benchmarks")
    encoder_lr_scale: float = field(1.0, "the encoder learns at --lr times this (the decoder at --lr); below 1 keeps pretrained features closer to where they were")
    encoder_channels: tuple[int, ...] = field((16, 32, 64, 128, 128), "U-Net encoder widths (ignored with --init: taken from the run)")
    decoder_channels: tuple[int, ...] = field((128, 64, 32, 32), "U-Net decoder widths, last = trunk (ignored with --init)")
    norm: str = field("batch", "normalization layer (ignored with --init)", choices=("batch", "instance", "group"))
    augment: bool = field(True, "random flips (left/right class swap where the data defines pairs), rotation/scaling, intensity jitter")
    eval_every: int = field(100, "validate every N steps (and at the end)")
    sw_batch_size: int = field(4, "windows per forward pass in sliding-window prediction")
    sw_overlap: float = field(0.25, "overlap of sliding windows")
    max_minutes: float = field(0.0, "stop training after this many minutes (0 = no limit); the schedule still assumes --steps")
    device: str = field("auto", "auto | cpu | cuda | cuda:N")
    precision: str = field("32", "numeric precision (autocast; losses in float32)", choices=("32", "bf16", "16-mixed"))
    workers: int = field(0, "data-loading worker processes")
    log_every: int = field(10, "add a row to metrics.csv and train.log every N steps (off a terminal, a progress line is printed at most every 30 s)")
    tensorboard: bool = field(False, "also write the logged values for TensorBoard into RUN/tensorboard/ (needs the tensorboard package)")
    checkpoint_every: int = field(100, "checkpoint every N steps")
    checkpoint_minutes: float = field(10.0, "also checkpoint at the first logged step after this many minutes since the last checkpoint (0 = by steps only)")
    resume: bool = field(False, "continue the run in --out from its last checkpoint")
    overwrite: bool = field(False, "replace an existing run in --out")
    dry_run: bool = field(False, "print the plan (resolution, patches, batch, memory, time per step) and exit without writing anything")
    pdcr: bool = field(False, "add the PDCR contrastive regularizer (patch-dragsaw contrastive regularizer of the decoder features)")
    pdcr_layers: tuple[str, ...] = field(("decoder.2", "decoder.3"), "feature maps PDCR samples from (encoder.i / decoder.j)")
    pdcr_vectors: int = field(64, "feature vectors sampled per image and layer")
    pdcr_windows: tuple[int, ...] = field((5, 7, 9), "label-window sizes in pixels (0 = whole receptive field)")
    pdcr_tau: float = field(-1.0, "PDCR temperature; -1 = the reference's: 1.0 for images, 0.5 for volumes")
    pdcr_pairs: str = field("image", choices=("image", "batch"), help="which sampled vectors PDCR contrasts with each other: image (within each image, as the reference) | batch (across the whole batch)")
    pdcr_weight: float = field(0.01, "weight of the PDCR loss (reference: 0.01 for decoder layers)")
    pdcr_cross_layer: bool = field(False, "also contrast vectors across layers")
    uafs_stages: tuple[int, ...] = field((), "decoder stages (0 = deepest) followed by an uncertainty-aware feature selection block")


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
        from .transfer import load_backbone_config

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


def finetune(cfg: FinetuneConfig) -> Path:
    from . import distributed as dist

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
    first = parts["train"][0]
    class_names = first.extra.get("class_names")
    channels = cfg.in_channels or int(first.extra.get("channels") or 0) or num_channels_of(parts["train"])
    nc = cfg.num_classes or None
    train_ds = ImageDataset(parts["train"], cfg.image_size, channels, with_masks=True, num_classes=nc)
    val_ds = ImageDataset(parts["val"], cfg.image_size, channels, with_masks=True, num_classes=nc) if parts["val"] else None
    # Load + check every labeled image now (train/val are cached for training); test images are
    # only checked, so that a broken test file fails here and not after hours of training.
    test_ds = ImageDataset(parts["test"], None, channels, with_masks=True, num_classes=nc, cache=False) if parts["test"] else None
    for ds in (train_ds, val_ds, test_ds):
        for i in range(len(ds) if ds is not None else 0):
            ds[i]
    require_foreground([d for d in (train_ds, val_ds) if d is not None])  # every mask empty: nothing to learn, say so
    num_classes = cfg.num_classes or infer_num_classes([d for d in (train_ds, val_ds) if d is not None], class_names)
    if not class_names or len(class_names) != num_classes:
        class_names = ["background"] + [f"class{c}" for c in range(1, num_classes)]
    flip_pairs = [tuple(p) for p in first.extra.get("flip_pairs", ())]

    run = Run(cfg.out, resume=cfg.resume, overwrite=cfg.overwrite, is_writer=env.is_main,
              inputs=[*data_inputs(cfg.data), cfg.init])  # --resume options were checked above, before the data
    try:  # outputs, the network and --init are validated before an existing run is touched
        check_not_inputs(cfg.out, (f for part in parts.values() for s in part for f in (s.image, s.mask, s.fov)))
        unet = build_unet(cfg, channels, num_classes)
        transferred: list[str] = []
        if cfg.init:
            from .transfer import load_pretrained_into

            transferred = load_pretrained_into(unet, cfg.init, tuple(cfg.transfer.split("+")))
        pdcr = None
        if cfg.pdcr:
            from ..losses.pdcr import PDCRLoss

            pdcr = PDCRLoss(unet_config=unet.config, num_classes=num_classes, layers=cfg.pdcr_layers, vectors_per_layer=cfg.pdcr_vectors,
                            windows=cfg.pdcr_windows, tau=cfg.pdcr_tau, cross_layer=cfg.pdcr_cross_layer, pairs=cfg.pdcr_pairs)
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
    encoder_params = [p for n, p in unet.named_parameters() if n.startswith("encoder.")]
    enc_ids = {id(p) for p in encoder_params}
    groups = [{"params": [p for p in model.parameters() if id(p) not in enc_ids]}, {"params": encoder_params, "lr": cfg.lr * cfg.encoder_lr_scale}]
    optimizer = torch.optim.Adam(groups, lr=cfg.lr, weight_decay=cfg.weight_decay)
    total = cfg.steps
    lam = (lambda s: 0.5 * (1 + math.cos(math.pi * min(s, total) / total))) if cfg.schedule == "cosine" else (lambda s: 1.0)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lam)
    info = {"unet": asdict(unet.config), "num_classes": num_classes, "class_names": class_names, "image_size": list(cfg.image_size),
            "patch_size": list(cfg.patch_size), "in_channels": channels, "task": first.extra.get("task", "segmentation"),
            "flip_pairs": [list(p) for p in flip_pairs], "init": cfg.init, "transferred_tensors": len(transferred)}
    run.write_json("splits.json", {k: [s.id for s in v] for k, v in parts.items()})
    log = TrainingLog(run.path if env.is_main else None, "finetune", cfg.steps)
    init = f"{cfg.transfer} from {cfg.init}" + (f", encoder frozen for {cfg.freeze_encoder_steps} steps" if cfg.freeze_encoder_steps else "") if cfg.init else "random init"
    log.say(f"finetune: {len(parts['train'])} labeled training images, {len(parts['val'])} validation, {len(parts['test'])} test from {cfg.data}; "
            f"{num_classes} classes ({', '.join(class_names)}), {channels} channel(s), {'x'.join(map(str, cfg.image_size))}; {init}; "
            f"{count_parameters(unet)}; {describe_threads(device, env.world)}; {cfg.steps} steps of {cfg.batch_size} -> {run.path}")
    log.say(f"plan: {plan}")

    start, best = 0, {"dice": -1.0, "step": 0}
    ckpt = latest_checkpoint(run.path) if cfg.resume else None
    if cfg.resume and ckpt is None:
        log.say(f"resuming {run.path}: no checkpoint found, starting at step 0")
    if ckpt is not None:
        weights, state, meta = load_checkpoint(ckpt)
        model.load_state_dict(weights)
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        if env.world == meta.get("world", 1):
            set_rng_state(state["rng"])
        start, best = int(meta["step"]), meta.get("best", best)
        run.truncate_metrics(start)
        log.say(f"resuming {run.path} from step {start}")
        log.start = start
    ddp_model = dist.wrap(model, env)
    loader = DataLoader(train_ds, batch_sampler=StepBatchSampler(len(train_ds), cfg.batch_size, cfg.seed, start, cfg.steps, env.rank, env.world),
                        collate_fn=stack_items, num_workers=cfg.workers, persistent_workers=cfg.workers > 0,
                        generator=torch.Generator().manual_seed(cfg.seed))  # own generator: iterating must not draw from the global RNG (resume)
    autocast = dist.autocast_context(cfg.precision, device)
    aug_cfg = AugmentConfig()
    stop_after = int(os.environ.get("LOCALDISC_STOP_AFTER_STEP", 0))  # test hook: simulate a kill
    nan_at = int(os.environ.get("LOCALDISC_NAN_AT_STEP", 0))  # test hook: inject a NaN loss

    def validate(done: int) -> dict[str, float]:
        if val_ds is None or not env.is_main:
            return {}
        scores = evaluate_dataset(unet, val_ds, num_classes, class_names, cfg, device)
        if scores["val_dice"] > best["dice"]:
            best.update(dice=scores["val_dice"], step=done)
            assert_finite_weights(unet, done, run.path)
            save_weights(unet.state_dict(), run.path / "best.safetensors", metadata={"step": str(done)})
        return scores

    def checkpoint(done: int) -> None:
        if env.is_main:
            assert_finite_weights(model, done, run.path)
            state = {"optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(), "rng": rng_state()}
            save_checkpoint(run.path, done, model.state_dict(), state, meta={"world": env.world, "best": best})

    def enter_train_mode(next_step: int) -> None:
        model.train()
        if next_step < cfg.freeze_encoder_steps:  # a frozen encoder keeps its pretrained BN statistics too
            freeze_norm_statistics(unet.encoder)

    enter_train_mode(start)
    t0, seen, done = time.time(), 0, start
    last_checkpoint = t0
    for step, batch in enumerate(loader, start=start):
        images = batch["image"].to(device, non_blocking=True)
        labels = batch["mask"].to(device, non_blocking=True)
        images, labels = sample_patches(images, labels, cfg.patch_size, cfg.patch_foreground)
        if cfg.augment:
            images, labels = augment_batch(images, labels, aug_cfg, flip_pairs)
        if step == cfg.freeze_encoder_steps and step > 0:
            unet.encoder.train()
            if env.is_main and best["step"] > 0:  # go on from the warm-up's best decoder (reference protocol)
                unet.load_state_dict(load_weights(run.path / "best.safetensors"))
            dist.broadcast_state(unet)
        with autocast():
            loss, logs = ddp_model(images, labels)
        if nan_at and step + 1 == nan_at:
            loss = loss * float("nan")
        if not torch.isfinite(loss.detach()):
            raise TrainingError(f"loss became {float(loss.detach())} at step {step + 1} (run {run.path}); lower the learning rate or check the input data. The last checkpoint is kept.")
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        if step < cfg.freeze_encoder_steps:
            for p in encoder_params:  # Adam skips parameters without a gradient
                p.grad = None
        optimizer.step()
        scheduler.step()
        done = step + 1
        seen += images.shape[0] * env.world
        out_of_time = bool(cfg.max_minutes) and time.time() - t0 > cfg.max_minutes * 60
        row: dict[str, float] = {}
        if done % cfg.log_every == 0 or done == cfg.steps or out_of_time:
            row.update(loss=float(loss.detach()), lr=scheduler.get_last_lr()[0], images_per_s=seen / max(time.time() - t0, 1e-9), **{k: float(v) for k, v in logs.items()})
        if (cfg.eval_every and done % cfg.eval_every == 0) or done == cfg.steps or out_of_time:
            model.eval()
            row.update(validate(done))
            enter_train_mode(done)
        if row:
            run.log(done, **row)
        log.step(done, images.shape[0] * env.world, **{k: v for k, v in row.items() if k != "images_per_s"})
        due = done % cfg.log_every == 0 and dist.minutes_passed(cfg.checkpoint_minutes, last_checkpoint)  # asked at logged steps only: a collective under DDP
        if done % cfg.checkpoint_every == 0 or done == cfg.steps or out_of_time or due:
            checkpoint(done)
            last_checkpoint = time.time()
        dist.barrier(env)
        if stop_after and done == stop_after:
            raise KeyboardInterrupt(f"LOCALDISC_STOP_AFTER_STEP={stop_after}")
        if out_of_time:
            log.say(f"time limit of {cfg.max_minutes} min reached at step {done}")
            break
    log.close()
    if env.is_main:
        assert_finite_weights(unet, done, run.path)
        save_weights(unet.state_dict(), run.path / "model.safetensors", metadata={"step": str(done)})
        if val_ds is None or not (run.path / "best.safetensors").is_file():
            save_weights(unet.state_dict(), run.path / "best.safetensors", metadata={"step": str(done)})
            best.update(step=done)
        info.update(steps_done=done, best_step=best["step"], best_val_dice=best["dice"] if val_ds is not None else None,
                    n_train=len(parts["train"]), n_val=len(parts["val"]), n_test=len(parts["test"]), run_name=run.path.name,
                    localdisc_version=__version__, commit=git_commit(), data=str(cfg.data), labels=cfg.labels, intensity=INTENSITY_RULE)
        atomic_write_text(run.path / "model.json", json.dumps(info, indent=2))
        atomic_write_text(run.path / "MODEL.md", model_card_markdown(info))
        chosen = f"best validation Dice {best['dice']:.4f} at step {best['step']}" if val_ds is not None and best["dice"] >= 0 else "no validation: the last step is kept"
        log.say(f"finetune: finished {done} steps in {(time.time() - t0) / 60:.1f} min; {chosen}")
    dist.barrier(env)
    run.finish()
    return run.path


__all__ = ["FinetuneConfig", "finetune", "finetune_samples", "assigned_splits", "infer_num_classes", "load_finetuned",
           "predict_logits", "evaluate_dataset", "sample_patches", "build_unet", "Supervised", "to_dict"]
