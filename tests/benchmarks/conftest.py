"""Benchmark scripts are files, not package modules: tests load them by name."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from types import ModuleType

import pytest

BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks"


def load_script(path: Path) -> ModuleType:
    """The module of benchmarks/NAME.py, executed fresh."""
    spec = importlib.util.spec_from_file_location(f"bench_{path.stem}", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture
def benchmark_script():
    """benchmark_script("across_runs") -> the module of benchmarks/across_runs.py."""
    return lambda name: load_script(BENCHMARKS / f"{name}.py")
