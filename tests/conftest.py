"""Shared fixtures. Tests keep tensors tiny; real-data tests skip when ../shared/data is absent."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import torch

torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))

SHARED_DATA = Path(os.environ.get("LOCALDISC_SHARED_DATA", Path(__file__).resolve().parents[1].parent / "shared" / "data"))


@pytest.fixture
def shared_data() -> Path:
    """The real datasets beside the checkout. A user's machine may lack them (skip); CI has them,
    so under CI=true their absence is a failure, never a silent skip."""
    if not SHARED_DATA.is_dir():
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"CI=true but the real datasets are missing at {SHARED_DATA} (set LOCALDISC_SHARED_DATA)")
        pytest.skip(f"real datasets not available at {SHARED_DATA}")
    return SHARED_DATA


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(0)


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)
    np.random.seed(0)
