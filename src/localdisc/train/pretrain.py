"""The pretraining loop shared by every method (nanoGPT-style: one readable loop).

``pretrain(cfg, method_cfg)``: unlabeled images -> method.training_step -> Adam with the
reference's step-halving schedule -> metrics.csv, pictures, atomic checkpoints, and at the
end ``backbone.safetensors`` for transfer. ``--resume`` continues from the last checkpoint
and ends with the same weights as an uninterrupted run (batches depend only on seed+step).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import DataLoader

from ..config import field, to_dict
from ..data.datasets import ImageDataset, num_channels_of, stack_items
from ..data.io import check_header
from ..data.resolution import auto_image_size, check_image_size
from ..data.sources import resolve_source, select_split
from ..errors import ConfigError, TrainingError
from ..methods import METHODS, PrepareContext, get_method
from ..nets import UNet, UNetConfig
from ..nets.transfer import save_backbone
from ..nets.unet import check_widths
from ..runtime import distributed as dist
from ..runtime.checkpoint import (
    assert_finite_weights,
    load_weights,
    resume_from_checkpoint,
    rng_state,
    save_checkpoint,
    save_weights,
)
from ..runtime.memory import plan_patch
from ..runtime.outputs import check_not_inputs, data_inputs
from ..runtime.progress import TrainingLog, count_parameters, describe_threads
from ..runtime.run import Run
from ..runtime.sampling import StepBatchSampler
from ..utils import seed_everything
from .probe import build_probe_set, probe_dice, save_probe_plot


@dataclass
class PretrainConfig:
    data: str = field("synthetic-fundus", "unlabeled images: folder, manifest CSV, or layout spec (e.g. ph2:/path, cxr:/path, drive:/path, synthetic-fundus, synthetic-3d); labels are ignored")
    out: str = field("runs/pretrain", "run folder to create (or continue with --resume)")
    method: str = field("ld", "self-supervised pretraining method: ld (local discrimination, two stages), ld-shape (LD guided by a shape prior), simclr, densecl, cluster-contrast, genesis", choices=lambda: tuple(METHODS))  # read when used: methods may be registered later
    split: str = field("train", choices=("train", "val", "test", "all"), help="use samples of this split plus unassigned ones; 'all' uses every image (never pretrain on a test split you evaluate on)")
    seed: int = field(0, "random seed; the same seed on the same machine gives the same numbers")
    steps: int = field(2000, "optimizer steps")
    batch_size: int = field(4, "images per step (global, across processes)")
    lr: float = field(1e-3, "Adam learning rate")
    lr_halve_every: int = field(0, "halve the learning rate every N steps (reference: 10000); 0 = constant")
    weight_decay: float = field(0.0, "Adam weight decay")
    image_size: tuple[int, ...] = field((), lengths=(0, 2, 3), help="images/volumes are resized to this (H W or D H W) before views are cut; default: the images' median size, never upsampled, the longer side at most 1024 px (2D) or 256 voxels (3D)")
    spacing: tuple[float, ...] = field((), lengths=(0, 3), help="volumes: resample to about this voxel size (mm, D H W) when --image-size is not given")
    in_channels: int = field(0, "input channels; 0 = taken from the first image")
    encoder_channels: tuple[int, ...] = field((16, 32, 64, 128, 128), "U-Net encoder widths")
    decoder_channels: tuple[int, ...] = field((128, 64, 32, 32), "U-Net decoder widths (last = trunk)")
    norm: str = field("batch", "normalization layer", choices=("batch", "instance", "group"))
    init: str = field("", "initialize from this earlier run's weights by parameter name (e.g. LD stage 1)")
    workers: int = field(0, "data-loading worker processes")
    device: str = field("auto", "auto | cpu | cuda | cuda:N")
    precision: str = field("32", "numeric precision (autocast; losses stay float32)", choices=("32", "bf16", "16-mixed"))
    log_every: int = field(10, "add a row to metrics.csv and train.log every N steps (off a terminal, a progress line is printed at most every 30 s)")
    tensorboard: bool = field(False, "also write the logged values for TensorBoard into RUN/tensorboard/ (needs the tensorboard package)")
    checkpoint_every: int = field(200, "checkpoint every N steps")
    checkpoint_minutes: float = field(10.0, "also checkpoint at the first logged step after this many minutes since the last checkpoint (0 = by steps only)")
    picture_every: int = field(500, "refresh pictures every N steps (0 = only at the end)")
    refresh_every: int = field(0, "call the method's prepare hook every N steps (e.g. recompute pseudo-classes); 0 = once")
    max_images: int = field(0, "use at most N images (0 = all)")
    probe_data: str = field("", "labeled images (same kinds of spec as --data) for a progress signal: the Dice of a linear probe on the model's frozen pixel features, fitted to --probe-labels images and scored on --probe-images other training images (never test), in metrics.csv and pictures/probe_dice.png")
    probe_labels: int = field(4, "labeled images the probe is fitted to")
    probe_images: int = field(8, "held-out labeled images the probe is scored on")
    probe_every: int = field(0, "probe every N steps (0 = at every checkpoint and at the end)")
    resume: bool = field(False, "continue the run in --out from its last checkpoint")
    overwrite: bool = field(False, "replace an existing run in --out")
    patch_size: tuple[int, ...] = field((), lengths=(0, 2, 3), help="train on patches of this size cut at the images' own scale (the method's --crop-size); "
                                        "empty = whole images, or automatic patches for large images and when whole images do not fit in memory")
    dry_run: bool = field(False, "print the plan (resolution, patches, batch, memory) and exit without writing anything")


def build_backbone(cfg: PretrainConfig, in_channels: int) -> UNet:
    return UNet(UNetConfig(spatial_dims=len(cfg.image_size), in_channels=in_channels, encoder_channels=cfg.encoder_channels, decoder_channels=cfg.decoder_channels, norm=cfg.norm))


def unlabeled_dataset(cfg: PretrainConfig) -> ImageDataset:
    everything = resolve_source(cfg.data, seed=cfg.seed)
    samples = select_split(everything, cfg.split)
    if cfg.max_images:
        samples = samples[: cfg.max_images]

    for s in samples:  # every file's header now: a bad 10th image must not end the run hours later
        check_header(s.image)
    if samples:
        check_image_size(cfg.image_size, samples[0].image)
    if not cfg.image_size:
        # the dataset's resolution (all its images): pretraining and fine-tuning of one dataset agree
        cfg.image_size = auto_image_size([s.image for s in everything], cfg.spacing, multiple=2 ** (len(cfg.encoder_channels) - 1))
    channels = cfg.in_channels or num_channels_of(samples)
    return ImageDataset(samples, cfg.image_size, channels, with_masks=False)


def plan_views(cfg: PretrainConfig, method_cls: Any, method_cfg: Any, automatic: bool, device) -> tuple[Any, str]:
    """The training patch (``--patch-size``, the method's ``crop_size``) that fits in memory, and
    the plan line. Large images train on patches by default; a patch cut at the images' own scale
    (``crop_scale`` around the patch's share of the image, unless the method's crop_scale was set)."""
    own = tuple(getattr(method_cfg, "crop_size", ()) or ())
    if cfg.patch_size and own and tuple(own) != tuple(cfg.patch_size):
        raise ConfigError(f"--patch-size {' '.join(map(str, cfg.patch_size))} and --crop-size {' '.join(map(str, own))} differ; give one")
    asked = tuple(cfg.patch_size) or own
    if asked and (len(asked) != len(cfg.image_size) or any(p > s for p, s in zip(asked, cfg.image_size))):
        raise ConfigError(f"--patch-size {' '.join(map(str, asked))} must have as many numbers as the image size {' '.join(map(str, cfg.image_size))} and not exceed it")
    patch, plan = plan_patch(cfg.image_size, asked, automatic and not asked, method_cls.images_per_sample, cfg.batch_size, cfg.encoder_channels,
                             cfg.decoder_channels, device, 2 ** (len(cfg.encoder_channels) - 1))
    if not patch or patch == own or not hasattr(method_cfg, "crop_size"):
        return method_cfg, plan
    changes: dict[str, Any] = {"crop_size": tuple(patch)}
    default_scale = method_cls.Config.__dataclass_fields__["crop_scale"].default if "crop_scale" in method_cls.Config.__dataclass_fields__ else None
    if default_scale is not None and tuple(method_cfg.crop_scale) == tuple(default_scale):
        share = math.prod(patch) / math.prod(cfg.image_size)
        changes["crop_scale"] = (max(0.01, round(share * 0.6, 4)), min(1.0, round(share * 1.4, 4)))
    return replace(method_cfg, **changes), plan


def run_pretraining(cfg: PretrainConfig, method_cfg: Any = None) -> Path:
    """A method's whole pretraining: the runs of ``get_method(cfg.method).schedule`` in order
    (one run for most methods; LD ``--stage both`` is two). Returns the last run's folder."""
    stages = get_method(cfg.method).schedule(cfg, method_cfg)
    out = Path(stages[-1].cfg.out)
    for stage in stages:
        if not stage.done:
            out = pretrain(stage.cfg, stage.method_cfg, typed=stage.typed, name=stage.name)
    return out


def pretrain(cfg: PretrainConfig, method_cfg: Any = None, typed: dict[str, Any] | None = None, name: str = "") -> Path:
    """One pretraining run into ``cfg.out``. ``typed``: the options as the user gave them, for
    the top of RUN/config.yaml (a schedule's stage runs differ from them; default: ``cfg``);
    ``name``: what progress lines call the run (default: the method's name)."""

    cfg = replace(cfg)  # automatic values are filled into a copy: the caller's config stays as given
    check_widths(cfg.encoder_channels, cfg.decoder_channels)
    env = dist.init(cfg.device)
    seed_everything(cfg.seed + env.rank)
    device = env.device
    method_cls = get_method(cfg.method)
    method_cls.check_batch(cfg.batch_size)
    method_cfg = method_cfg if method_cfg is not None else method_cls.Config()
    typed = typed or {**to_dict(cfg), "method_config": to_dict(method_cfg)}  # before automatic values are filled in
    if cfg.dry_run:
        dataset = unlabeled_dataset(cfg)
        _, plan = plan_views(cfg, method_cls, method_cfg, not typed.get("image_size"), device)
        print(f"{name or cfg.method} plan: {len(dataset)} unlabeled images from {cfg.data}; {plan}; {cfg.steps} steps -> {cfg.out} (dry run: nothing written)")
        return Path(cfg.out)
    run = Run(cfg.out, resume=cfg.resume, overwrite=cfg.overwrite, is_writer=env.is_main,
              inputs=[*data_inputs(cfg.data), *data_inputs(cfg.probe_data), cfg.init], options=typed, may_differ=("steps",))
    dist.barrier(env)  # every rank has checked the folder before rank 0 writes into it
    try:  # validate data, network and --init before an existing run is touched
        if not env.is_main:
            dist.barrier(env)  # rank 0 builds any on-disk data cache first
        dataset = unlabeled_dataset(cfg)
        check_not_inputs(cfg.out, (f for s in dataset.samples for f in (s.image, s.mask, s.fov)))
        method_cfg, plan = plan_views(cfg, method_cls, method_cfg, not typed.get("image_size"), device)
        if env.is_main:
            dist.barrier(env)
        in_ch = dataset.channels
        if cfg.in_channels == 0:
            cfg.in_channels = in_ch
        model = method_cls(build_backbone(cfg, in_ch), method_cfg).to(device)
        events = []
        if cfg.init:
            names = _init_by_name(model, Path(cfg.init) / "model.safetensors")
            events.append(f"initialized {len(names)} tensors by name from {cfg.init}")
        probe = None
        if cfg.probe_data and env.is_main:
            probe = build_probe_set(cfg.probe_data, cfg.probe_labels, cfg.probe_images, tuple(cfg.image_size), in_ch, cfg.seed)
    except BaseException:
        run.abandon()
        raise
    run.save_config(cfg, typed=typed, method_config=method_cfg)
    if cfg.tensorboard:
        run.use_tensorboard()
    name = name or cfg.method
    log = TrainingLog(run.path if env.is_main else None, name, cfg.steps)
    log.say(f"{name}: {len(dataset)} unlabeled images from {cfg.data}, {in_ch} channel(s), resized to {'x'.join(map(str, cfg.image_size))}; "
            f"{count_parameters(model)}; {describe_threads(device, env.world)}; {cfg.steps} steps of {cfg.batch_size} images -> {run.path}")
    log.say(f"plan: {plan}")
    for event in events:
        log.say(event)

    optimizer = torch.optim.Adam(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    halve = cfg.lr_halve_every or 10**12
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda s: 0.5 ** (s // halve))

    meta = resume_from_checkpoint(run, cfg.resume, model, optimizer, scheduler, env.world, env.rank, log)
    if meta is not None:
        model.load_extra_state(meta.get("extra", {}))
    start = int(meta["step"]) if meta else 0
    ddp_model = dist.wrap(model, env)

    loader = DataLoader(
        dataset,
        batch_sampler=StepBatchSampler(len(dataset), cfg.batch_size, cfg.seed, start, cfg.steps, env.rank, env.world),
        collate_fn=stack_items,
        num_workers=cfg.workers,
        persistent_workers=cfg.workers > 0,
        pin_memory=device.type == "cuda",
        generator=torch.Generator().manual_seed(cfg.seed),  # else the loader draws its seed from the global RNG and breaks resume
    )
    fixed = stack_items([dataset[i] for i in range(min(4, len(dataset)))])["image"].to(device)
    if probe is not None:
        run.write_json("probe.json", {"data": cfg.probe_data, "fit_ids": probe.fit_ids, "score_ids": probe.score_ids})
        probe_rows = [(int(float(r["step"])), float(r["probe_dice"])) for r in run.rows() if r.get("probe_dice") not in (None, "")]
    probe_every = cfg.probe_every or cfg.checkpoint_every
    ctx = PrepareContext(step=start, run_dir=run.path if env.is_main else None, dataset=dataset, device=device, seed=cfg.seed, is_main=env.is_main, gather=dist.gather_fn(env), refresh_every=cfg.refresh_every,
                         log=log.say if env.is_main else None)
    model.prepare(ctx)
    autocast = dist.autocast_context(cfg.precision, device)
    scaler = dist.grad_scaler(cfg.precision, device)

    model.train()
    t0, seen = time.time(), 0
    last_checkpoint = t0
    step = start
    in_step = 0.0  # seconds inside the training steps alone: images_per_s over this isolates data loading, logging, checkpoints
    for step, batch in enumerate(loader, start=start):
        step_start = time.perf_counter()
        if cfg.refresh_every and step > start and step % cfg.refresh_every == 0:
            model.prepare(PrepareContext(**{**ctx.__dict__, "step": step}))
        images = batch["image"].to(device, non_blocking=True)
        with autocast():
            # methods with ``wants_batch`` (cluster-contrast: pseudo-class by "index") get the whole dict
            inputs = {k: v.to(device, non_blocking=True) for k, v in batch.items()} if getattr(model, "wants_batch", False) else images
            loss, logs = ddp_model(inputs)
        if not torch.isfinite(loss.detach()):
            raise TrainingError(f"loss became {float(loss.detach())} at step {step + 1} (run {run.path}); lower the learning rate or check the input data. The last checkpoint is kept.")
        optimizer.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()
        scheduler.step()
        seen += images.shape[0] * env.world
        in_step += time.perf_counter() - step_start
        done = step + 1
        shown: dict[str, float] = {}
        probe_due = bool(cfg.probe_data) and (done % probe_every == 0 or done == cfg.steps)
        if done % cfg.log_every == 0 or done == cfg.steps or probe_due:
            elapsed = time.time() - t0
            # means over ranks (collectives: every rank logs at the same steps)
            loss_value = dist.reduce_mean(loss.detach().float())
            logged = {k: dist.reduce_mean(float(v)) for k, v in logs.items()}
            if probe is not None and probe_due:  # rank 0 only; its time is not counted in images/s
                probe_rows.append((done, probe_dice(model, probe, device, seed=cfg.seed)))
                logged["probe_dice"] = probe_rows[-1][1]
                save_probe_plot(probe_rows, run.path / "pictures" / "probe_dice.png")
            run.log(done, loss=loss_value, lr=scheduler.get_last_lr()[0], images_per_s=seen / max(elapsed, 1e-9),
                    step_images_per_s=seen / max(in_step, 1e-9), **logged)
            shown = {"loss": loss_value, **{k: v for k, v in logged.items() if isinstance(v, float)}, "lr": scheduler.get_last_lr()[0]}
        log.step(done, images.shape[0] * env.world, **shown)
        if env.is_main and cfg.picture_every and done % cfg.picture_every == 0:
            _pictures(model, fixed, run.path)
        due = done % cfg.log_every == 0 and dist.minutes_passed(cfg.checkpoint_minutes, last_checkpoint)  # asked at logged steps only: a collective under DDP
        if (done % cfg.checkpoint_every == 0 or due) and done < cfg.steps:
            last_checkpoint = time.time()
            rngs = dist.gather_objects(rng_state())  # collective: every rank's RNG stream
            if env.is_main:
                _checkpoint(run.path, done, model, optimizer, scheduler, env.world, rngs)
    log.close()
    rngs = dist.gather_objects(rng_state())
    if env.is_main:
        _pictures(model, fixed, run.path)
        _checkpoint(run.path, cfg.steps, model, optimizer, scheduler, env.world, rngs)

        save_weights(model.state_dict(), run.path / "model.safetensors", metadata={"method": cfg.method})
        save_backbone(model.backbone, run.path, cfg.method)
        run.write_json("method_state.json", model.extra_state())
        log.say(f"{name}: finished {cfg.steps} steps in {(time.time() - t0) / 60:.1f} min; weights in {run.path / 'model.safetensors'}")
    dist.barrier(env)
    run.finish()
    return run.path


def _init_by_name(model: torch.nn.Module, src: Path) -> list[str]:
    """Copy every tensor whose name and shape match; loud error if nothing or a shape differs."""
    weights = load_weights(src)
    target = model.state_dict()
    wrong = [k for k, v in weights.items() if k in target and v.shape != target[k].shape]
    if wrong:
        raise ConfigError(f"{src}: shape mismatch for {wrong[:5]}; was it trained with other widths or channels?")
    common = [k for k in weights if k in target]
    if not any(k.startswith("backbone.") for k in common):
        raise ConfigError(f"{src}: no backbone tensors match this model by name")
    target.update({k: weights[k] for k in common})
    model.load_state_dict(target)
    return common


def _checkpoint(run_dir: Path, step: int, model, optimizer, scheduler, world: int, rngs: list | None = None) -> None:
    assert_finite_weights(model, step, run_dir)
    rngs = rngs or [rng_state()]
    state = {"optimizer": optimizer.state_dict(), "scheduler": scheduler.state_dict(), "rng": rngs[0], "rng_ranks": rngs}
    save_checkpoint(run_dir, step, model.state_dict(), state, meta={"world": world, "extra": model.extra_state()})


def _pictures(model, images: torch.Tensor, run_dir: Path) -> None:
    was = model.training
    model.eval()
    with torch.no_grad():
        model.save_pictures(images, run_dir / "pictures")
    model.train(was)
