"""Small shared helpers: seeding, device choice, progress bars."""

from __future__ import annotations

import os
import random
import re
import sys
import time

import numpy as np
import torch
from tqdm.auto import tqdm

from .errors import ConfigError


def seed_everything(seed: int) -> torch.Generator:
    """Seed python, numpy and torch; return a torch Generator for data-order randomness."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)
    g = torch.Generator()
    g.manual_seed(seed)
    return g


def pick_device(name: str = "auto") -> torch.device:
    """``auto`` (this process's GPU under torchrun, else the first GPU, else the CPU), ``cpu``,
    ``cuda`` or ``cuda:N``; anything else, or a GPU this machine lacks, is a one-line error."""

    name = str(name)
    if not re.fullmatch(r"auto|cpu|cuda(:\d+)?|mps", name):
        raise ConfigError(f"--device: expected auto, cpu, cuda or cuda:N, got {name!r}")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise ConfigError(f"--device {name}: no CUDA GPU is available here (use --device auto or cpu)")
    if name == "auto":
        if torch.cuda.is_available():
            local = int(os.environ.get("LOCAL_RANK", 0))
            return torch.device(f"cuda:{local}")
        return torch.device("cpu")
    return torch.device(name)


def progress(iterable=None, total: int | None = None, desc: str = "", disable: bool | None = None, every: float = 30.0, **kw):
    """A tqdm bar on a terminal; off a terminal (logs, CI, pipes) plain lines on stdout: the first
    at once, then at most every ``every`` seconds, and the last. Quiet on non-zero ranks."""

    rank0 = int(os.environ.get("RANK", 0)) == 0
    if disable is None and sys.stderr.isatty() and rank0:
        return tqdm(iterable, total=total, desc=desc, dynamic_ncols=True, **kw)
    if disable or not rank0 or iterable is None:
        return tqdm(iterable, total=total, desc=desc, disable=True, **kw)
    return _progress_lines(iterable, total, desc, every)


def _progress_lines(iterable, total: int | None, desc: str, every: float):
    total = total if total is not None else (len(iterable) if hasattr(iterable, "__len__") else None)
    start = last = time.time()
    done = 0
    for item in iterable:
        now = time.time()
        if done == 0 or now - last >= every:
            eta = f", ETA {_clock((now - start) / done * (total - done))}" if done and total else ""
            print(f"{desc}: {done}/{total if total is not None else '?'}{eta}", flush=True)
            last = now
        yield item
        done += 1
    print(f"{desc}: {done}/{total if total is not None else done} done in {_clock(time.time() - start)}", flush=True)


def _clock(seconds: float) -> str:
    m, s = divmod(int(seconds), 60)
    return f"{m // 60}h{m % 60:02d}m" if m >= 60 else f"{m}m{s:02d}s"


def safe_name(sample_id: str) -> str:
    """A file name for a sample id from user data: characters outside ``[A-Za-z0-9._-]`` become
    ``_`` and leading dots are dropped, so ``../../x`` or ``/etc/y`` stays inside the folder."""

    return re.sub(r"[^A-Za-z0-9._-]", "_", str(sample_id)).lstrip(".")[:120] or "image"


class SafeNames:
    """Unique :func:`safe_name` file names: a name already given out gets ``-2``, ``-3``, ... so
    two ids that sanitize alike (``a/b`` and ``a_b``) never overwrite each other's files."""

    def __init__(self) -> None:
        self._used: set[str] = set()

    def __call__(self, sample_id: str) -> str:
        base = safe_name(sample_id)
        name, k = base, 1
        while name.lower() in self._used:
            k += 1
            name = f"{base}-{k}"
        self._used.add(name.lower())
        return name
