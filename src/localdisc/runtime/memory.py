"""Will a training step fit? Memory estimates before step 1, and the patch size that fits.

A U-Net's training step holds, per pixel of every image the network sees, a few float32
tensors per channel at each scale (convolution, normalization and activation outputs kept for
the backward pass). With widths c_l at scale l (l = 0 full resolution, each level 2^d times
fewer pixels in d dimensions)::

    bytes ~ BYTES_PER_CHANNEL_PIXEL * pixels * images * sum_l (enc_l + dec_l) / 2^(d*l) + FIXED

``BYTES_PER_CHANNEL_PIXEL`` was measured on this project's U-Net on the CPU (peak resident
memory of one forward + backward: 24 bytes per channel-pixel at 64^2-512^2 and 64^3, batch 2-8),
rounded up to 30 for the optimizer, the heads and the loss. ``images``: the batch size times
the images a method's step puts through the network per sample (LD: 5, SimCLR: 2).

The budget is 80% of the memory available now (``MemAvailable``; on a GPU the free device
memory), or ``LOCALDISC_MEMORY_LIMIT`` (``8G``, ``512M`` or bytes) when set.
"""

from __future__ import annotations

import math
import os
from typing import Sequence

import torch

from ..errors import ConfigError

BYTES_PER_CHANNEL_PIXEL = 30
FIXED_BYTES = 300 << 20  # interpreter, torch, data cache of a small dataset
DEFAULT_PATCH = {2: 512, 3: 128}  # automatic sizes above this many pixels per side train on patches
MIN_PATCH = {2: 64, 3: 32}


def step_bytes(size: Sequence[int], images: int, encoder_channels: Sequence[int], decoder_channels: Sequence[int]) -> int:
    """Estimated peak memory of one training step: ``images`` network inputs of ``size``."""
    d = len(size)
    pixels = math.prod(int(s) for s in size)
    dec = list(decoder_channels)[::-1]  # shallowest first, like the encoder
    weighted = sum((enc + (dec[level] if level < len(dec) else 0)) / 2 ** (d * level) for level, enc in enumerate(encoder_channels))
    return int(BYTES_PER_CHANNEL_PIXEL * pixels * images * weighted + FIXED_BYTES)


def budget_bytes(device: torch.device | str = "cpu") -> int:
    """The memory a step may use (see the module doc)."""
    limit = os.environ.get("LOCALDISC_MEMORY_LIMIT")
    if limit:
        return parse_size(limit)
    if str(device).startswith("cuda") and torch.cuda.is_available():
        free, _ = torch.cuda.mem_get_info(torch.device(device))
        return int(free * 0.9)
    return int(_mem_available() * 0.8)


def parse_size(text: str) -> int:
    units = {"k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40}
    t = str(text).strip().lower().rstrip("b")
    try:
        value = float(t[:-1]) * units[t[-1]] if t and t[-1] in units else float(t)
    except (ValueError, IndexError):
        raise ConfigError(f"LOCALDISC_MEMORY_LIMIT: expected a size such as 8G or 512M, got {text[:40]!r}") from None
    if not math.isfinite(value) or value <= 0:
        raise ConfigError(f"LOCALDISC_MEMORY_LIMIT must be a positive size, got {text[:40]!r}")
    return int(value)


def _mem_available() -> int:
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError):
        return 8 << 30


def gib(n: int) -> str:
    return f"{n / (1 << 30):.1f} GB"


def fitting_patch(size: Sequence[int], images: int, encoder_channels: Sequence[int], decoder_channels: Sequence[int],
                  budget: int, multiple: int) -> tuple[int, ...] | None:
    """The largest patch (each side at most :data:`DEFAULT_PATCH`, halved until it fits, a
    multiple of the U-Net's stride) whose step fits ``budget``; None when even the smallest does not."""
    d = len(size)
    side = DEFAULT_PATCH[d]
    while side >= MIN_PATCH[d]:
        patch = tuple(max(multiple, min(int(s), side) // multiple * multiple) for s in size)
        if step_bytes(patch, images, encoder_channels, decoder_channels) <= budget:
            return patch
        side //= 2
    return None


def plan_patch(size: Sequence[int], patch: Sequence[int], automatic: bool, images: int, batch: int, encoder_channels: Sequence[int],
               decoder_channels: Sequence[int], device: torch.device | str, multiple: int, patch_option: str = "--patch-size") -> tuple[tuple[int, ...], str]:
    """(training patch, one plan line). ``automatic``: neither the image size nor the patch was
    given, so localdisc may choose patches (large images always train on them, and smaller ones
    when whole images do not fit); otherwise a step that does not fit is refused in one line."""
    budget = budget_bytes(device)
    d = len(size)
    patch = tuple(int(p) for p in patch)
    if automatic and not patch and max(size) > DEFAULT_PATCH[d]:
        patch = fitting_patch(size, images * batch, encoder_channels, decoder_channels, budget, multiple) or ()
    shape = patch or tuple(size)
    need = step_bytes(shape, images * batch, encoder_channels, decoder_channels)
    if need > budget and automatic and not patch:
        patch = fitting_patch(size, images * batch, encoder_channels, decoder_channels, budget, multiple) or ()
        shape = patch or tuple(size)
        need = step_bytes(shape, images * batch, encoder_channels, decoder_channels)
    where = "x".join(map(str, size)) + (f" images, {'x'.join(map(str, patch))} patches" if patch else " images (whole)")
    if need > budget:
        smaller = tuple(max(multiple, s // 2 // multiple * multiple) for s in shape)
        raise ConfigError(f"one step needs about {gib(need)} at {where}, batch {batch}, and {gib(budget)} is available; "
                          f"pass {patch_option} {' '.join(map(str, smaller))}, a smaller --batch-size or --image-size "
                          "(or set LOCALDISC_MEMORY_LIMIT if the estimate is wrong for this machine)")
    return patch, f"{where}, batch {batch} x {images} network image(s): about {gib(need)} per step of {gib(budget)} available"


__all__ = ["step_bytes", "budget_bytes", "parse_size", "fitting_patch", "plan_patch", "gib", "DEFAULT_PATCH"]
