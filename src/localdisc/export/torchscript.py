"""TorchScript export (``torch.jit.trace``): runs without localdisc, in C++ or MONAI bundles.

Tracing (not scripting) because the U-Net's optional UAFS gates are looked up by name; the
traced graph keeps sizes symbolic, so other batch and spatial sizes work too.
"""

from __future__ import annotations

import json
import warnings
from pathlib import Path
from typing import Any

import torch

from ..errors import TrainingError


def trace(model: torch.nn.Module, example: torch.Tensor) -> torch.jit.ScriptModule:
    model = model.eval()
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")  # TracerWarnings about python-side shape checks
        return torch.jit.trace(model, example, check_trace=False)


def check_close(name: str, got: torch.Tensor, want: torch.Tensor, atol: float = 1e-4) -> float:
    err = float((got.float() - want.float()).abs().max())
    if not err <= atol:
        raise TrainingError(f"{name}: exported model differs from PyTorch by {err:.3g} (> {atol}); not writing a wrong export")
    return err


def to_torchscript(model: torch.nn.Module, info: dict[str, Any], path: Path, check: bool = True) -> Path:
    """Trace ``model`` on a (1, C, *image_size) input and save to ``path`` with the info as extra file."""
    from . import example_input

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    ts = trace(model, example_input(info))
    if check:
        x = example_input(info, batch=2, seed=1)
        with torch.no_grad():
            check_close(str(path), ts(x), model(x))
    tmp = path.with_name(f".{path.name}.tmp")
    torch.jit.save(ts, str(tmp), _extra_files={"localdisc.json": json.dumps(info)})
    tmp.replace(path)
    return path
