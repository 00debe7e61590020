"""Shared by the benchmarks that train their own pretraining run when ``--run`` is not given
(cluster_cxr, discover_vessels, discover_lungs, landmarks): the run-size options and the
PretrainConfig they make, so the scripts size and log their runs the same way; and two small
helpers the benchmarks share (usable CPUs, the images' stored size)."""

from __future__ import annotations

import argparse
from pathlib import Path


def add_pretrain_args(p: argparse.ArgumentParser) -> None:
    """--pretrain-steps, --batch-size, --image-size, --encoder/decoder-channels, --grid."""
    p.add_argument("--pretrain-steps", type=int, default=3000)
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--image-size", type=int, nargs=2, default=[256, 256])
    p.add_argument("--encoder-channels", type=int, nargs="+", default=[16, 32, 64, 128, 128])
    p.add_argument("--decoder-channels", type=int, nargs="+", default=[128, 64, 32, 32])
    p.add_argument("--grid", type=int, default=8)


def pretrain_config(args: argparse.Namespace, data: str, out: Path, steps: int | None = None, **overrides):
    """PretrainConfig on the train split from the options above; lr halved at mid-run, ~20 log rows."""
    from localdisc.train.pretrain import PretrainConfig

    steps = args.pretrain_steps if steps is None else steps
    settings = dict(data=data, out=str(out), split="train", steps=steps, batch_size=args.batch_size, image_size=tuple(args.image_size),
                    encoder_channels=tuple(args.encoder_channels), decoder_channels=tuple(args.decoder_channels),
                    lr_halve_every=max(1, steps // 2), picture_every=0, log_every=max(1, steps // 20), overwrite=True, device=args.device)
    return PretrainConfig(**{**settings, **overrides})


def usable_cpus() -> int:
    """CPUs this process may run on (respects taskset and cpusets, unlike os.cpu_count())."""
    import os

    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def images_own_size(data: str) -> list[int]:
    """Stored size of the first image of a data source (before any training resize)."""
    from localdisc.data.records import load_sample_image
    from localdisc.data.sources import resolve_source

    return list(load_sample_image(resolve_source(data)[0]).shape[1:])
