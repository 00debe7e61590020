"""Small shared helpers: seeding, device choice, progress bars."""

from __future__ import annotations

import os
import random
import sys

import numpy as np
import torch


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
    import re

    from .errors import ConfigError

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


def progress(iterable=None, total: int | None = None, desc: str = "", disable: bool | None = None, **kw):
    """tqdm that stays quiet when stderr is not a terminal (CI, logs) or on non-zero ranks."""
    from tqdm.auto import tqdm

    if disable is None:
        disable = not sys.stderr.isatty() or int(os.environ.get("RANK", 0)) != 0
    return tqdm(iterable, total=total, desc=desc, disable=disable, dynamic_ncols=True, **kw)


def safe_name(sample_id: str) -> str:
    """A file name for a sample id from user data: characters outside ``[A-Za-z0-9._-]`` become
    ``_`` and leading dots are dropped, so ``../../x`` or ``/etc/y`` stays inside the folder."""
    import re

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
