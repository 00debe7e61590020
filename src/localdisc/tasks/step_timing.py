"""How long a training step takes: overheads, step budgets, pretraining throughput.

- :func:`pdcr_overhead`: one full supervised step (forward, DiceCE (+ 0.05 PDCR), backward,
  Adam) of the default U-Net in three modes on the same fixed inputs: ``plain``; ``pdcr`` (PDCR
  on decoder.2 and decoder.3, 64 vectors per image and layer, windows 5/7/9); ``pdcr+uafs`` (+
  UAFS after decoder stages 2 and 3). Every mode starts from seed 0 (shared layers get the same
  weights) and repetitions are interleaved (plain, pdcr, pdcr+uafs, plain, ...) so load changes
  hit every mode alike; the median seconds per step and the ratio to ``plain`` are reported.
- :func:`seconds_per_step` / :func:`steps_in_budget`: the step count a wall-clock budget allows
  (benchmarks/supervised.py).
- :func:`pretrain_throughput`: images/s of ``localdisc pretrain`` in a fresh process (under
  ``torch.distributed.run`` for several processes), read from the run's metrics.csv (cumulative,
  warm-up included; benchmarks/scaling.py).
"""

from __future__ import annotations

import csv
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Sequence

import torch

from ..losses.pdcr import PDCRLoss
from ..nets import UNet, UNetConfig
from ..train.finetune_config import FinetuneConfig
from ..train.finetune_model import Supervised, build_unet
from ..utils import pick_device

MODES = ("plain", "pdcr", "pdcr+uafs")
DTYPES = {"bf16": torch.bfloat16, "16-mixed": torch.float16}  # autocast precisions; "32": none


def build_mode(mode: str, spatial_dims: int, in_channels: int, num_classes: int, device: torch.device) -> tuple[Supervised, torch.optim.Optimizer]:
    """The supervised model of one mode (see the module docstring) and its Adam, from seed 0."""
    torch.manual_seed(0)
    cfg = UNetConfig(spatial_dims=spatial_dims, in_channels=in_channels, uafs_stages=(2, 3) if mode == "pdcr+uafs" else ())
    unet = UNet(cfg, out_channels=num_classes)
    pdcr = None if mode == "plain" else PDCRLoss(cfg, num_classes, layers=("decoder.2", "decoder.3"), vectors_per_layer=64, windows=(5, 7, 9), tau=0.1)
    model = Supervised(unet, pdcr, 0.05 if pdcr is not None else 0.0).to(device).train()
    return model, torch.optim.Adam(model.parameters(), lr=1e-3)


def timed_step(model: Supervised, opt: torch.optim.Optimizer, x: torch.Tensor, y: torch.Tensor, dtype: torch.dtype | None = None) -> float:
    """Seconds of one forward + backward + optimizer step (the GPU synchronized before and after)."""
    cuda = x.device.type == "cuda"
    if cuda:
        torch.cuda.synchronize(x.device)
    t0 = time.perf_counter()
    with torch.autocast(x.device.type, dtype=dtype, enabled=dtype is not None):
        loss, _ = model(x, y)
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()
    if cuda:
        torch.cuda.synchronize(x.device)
    return time.perf_counter() - t0


def pdcr_overhead(shape: Sequence[int], classes: int, reps: int, warmup: int, device: torch.device, precision: str = "32") -> dict[str, Any]:
    """shape (B, C, *spatial) -> {shape, classes, median_s, ratio_to_plain, times_s} per mode."""
    batch, channels, *spatial = shape
    g = torch.Generator().manual_seed(1)
    x = torch.rand(batch, channels, *spatial, generator=g).to(device)
    y = torch.randint(0, classes, (batch, *spatial), generator=g).to(device)
    models = {m: build_mode(m, len(spatial), channels, classes, device) for m in MODES}
    times: dict[str, list[float]] = {m: [] for m in MODES}
    for rep in range(warmup + reps):
        for mode in MODES:  # interleaved
            dt = timed_step(*models[mode], x, y, DTYPES.get(precision))
            if rep >= warmup:
                times[mode].append(dt)
    median = {m: statistics.median(t) for m, t in times.items()}
    return {"shape": list(shape), "classes": classes, "median_s": median, "ratio_to_plain": {m: median[m] / median["plain"] for m in MODES}, "times_s": times}


def seconds_per_step(cfg: FinetuneConfig, in_channels: int, num_classes: int, device: str, reps: int = 3) -> float:
    """Median seconds of a step of ``cfg``'s network on random input of its training shape (one warm-up step)."""
    dev = pick_device(device)
    model = Supervised(build_unet(cfg, in_channels, num_classes)).to(dev).train()
    opt = torch.optim.Adam(model.parameters(), lr=1e-4)
    size = tuple(cfg.patch_size or cfg.image_size)
    x = torch.rand((cfg.batch_size, in_channels) + size, device=dev)
    y = torch.randint(0, num_classes, (cfg.batch_size,) + size, device=dev)
    times = [timed_step(model, opt, x, y) for _ in range(reps + 1)][1:]
    return sorted(times)[len(times) // 2]


def steps_in_budget(minutes: float, seconds: float, share: float = 0.85, least: int = 50) -> int:
    """Steps of ``seconds`` each that fit ``share`` of ``minutes`` (the rest: validation, data loading)."""
    return max(least, int(minutes * 60 * share / seconds))


def throughput_configs(methods: Sequence[str], nproc: Sequence[int], precisions: Sequence[str], workers: Sequence[int]) -> list[tuple[str, int, str, int]]:
    """(method, processes, precision, workers): each method at each process count (fp32, 0
    workers), then the other precisions and worker counts at one process."""
    rows = []
    for m in methods:
        rows += [(m, n, "32", 0) for n in nproc]
        rows += [(m, 1, p, 0) for p in precisions if p != "32"]
        rows += [(m, 1, "32", w) for w in workers if w != 0]
    return rows


def pretrain_throughput(method: str, nproc: int, precision: str, workers: int, options: list[str], out: Path, threads: int = 1,
                        timeout: float = 1800) -> dict[str, Any]:
    """Run ``localdisc pretrain --method METHOD OPTIONS --out OUT`` (``options``: data, steps,
    sizes...) in a fresh process with ``threads`` OpenMP threads; the row {method, nproc,
    precision, workers, wall_s, command, images_per_s, final_loss} or {..., error}."""
    args = ["pretrain", "--method", method, *options, "--precision", precision, "--workers", str(workers), "--out", str(out)]
    launcher = ([sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}"] if nproc > 1 else [sys.executable]) + ["-m", "localdisc.cli.main"]
    t0 = time.time()
    res = subprocess.run(launcher + args, capture_output=True, text=True, env={**os.environ, "OMP_NUM_THREADS": str(threads)}, timeout=timeout)
    shown = "localdisc" if nproc == 1 else f"torchrun --nproc_per_node {nproc} -m localdisc.cli.main"
    row = {"method": method, "nproc": nproc, "precision": precision, "workers": workers, "wall_s": round(time.time() - t0, 1), "command": " ".join([shown, *args[:-2]])}
    if res.returncode != 0:
        text = (res.stderr or res.stdout).strip()
        row["error"] = text.splitlines()[-1][:300] if text else f"exit {res.returncode}"
        return row
    with (out / "metrics.csv").open() as f:
        last = list(csv.DictReader(f))[-1]
    alone = {"step_images_per_s": round(float(last["step_images_per_s"]), 2)} if last.get("step_images_per_s") else {}
    return {**row, "images_per_s": round(float(last["images_per_s"]), 2), **alone, "final_loss": float(last["loss"])}
