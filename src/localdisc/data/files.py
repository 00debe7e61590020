"""The first checks on any input file: a regular file (before anything opens it), and a size
its header promises within the session's limits (before any pixel is decoded)."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from ..errors import DataError


def require_file(path: str | Path, expected: str = "an image, mask or volume file") -> Path:
    """``path`` when it is a regular file (symlinks followed), else one line naming it. Runs
    before any open(): opening a FIFO blocks until something writes to it, a device may never
    end, and a folder named like an image is a mistake, not data."""
    path = Path(path)
    if path.is_file():
        return path
    if not path.exists():
        raise DataError(f"{path}: file not found")
    kind = "a folder" if path.is_dir() else "not a regular file (a FIFO, device or socket)"
    raise DataError(f"{path}: is {kind}; expected {expected}")


# Headers are checked against these before any pixel is decoded (decompression bombs): a file
# that promises more is refused with one line naming it. LOCALDISC_MAX_PIXELS /
# LOCALDISC_MAX_VOXELS raise (or lower) them for a whole session.
MAX_PIXELS = int(float(os.environ.get("LOCALDISC_MAX_PIXELS", 100e6)))  # 10000 x 10000
MAX_VOXELS = int(float(os.environ.get("LOCALDISC_MAX_VOXELS", 512**3)))


def check_size(path: Path, shape, limit: int, what: str) -> None:
    n = int(np.prod([int(s) for s in shape], dtype=np.float64))
    if n > limit:
        env = "LOCALDISC_MAX_PIXELS" if what == "pixels" else "LOCALDISC_MAX_VOXELS"
        raise DataError(f"{path}: header promises {'x'.join(str(int(s)) for s in shape)} = {n:,} {what}, more than the limit of "
                        f"{limit:,} (refused before decoding; raise it with localdisc --max-{what} N or {env} if the file is genuine)")
