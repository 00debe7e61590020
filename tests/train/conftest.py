"""Fixtures for tests/train: the multi-process (DDP) launcher shared by the distributed tests."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest


@pytest.fixture(scope="session")
def ddp_launch():
    """``launch(worker_file, nproc, args, timeout=120)`` from tests/train/ddp_harness.py.

    Loaded by path so it does not depend on pytest's import mode or sys.path (tests/ has no
    __init__.py).
    """
    spec = importlib.util.spec_from_file_location("ddp_harness", Path(__file__).with_name("ddp_harness.py"))
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.launch
