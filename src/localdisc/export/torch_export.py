"""``torch.export`` export (``.pt2``): the network as an ExportedProgram, loadable without
localdisc by ``torch.export.load(path).module()`` (also what the MONAI bundle runs).

Batch and spatial sizes stay symbolic (``Dim.AUTO``), so other batch sizes and image sizes
(multiples of the U-Net's total stride) work too. The example input has batch 2: with a batch
of 1, export would specialize the batch dimension to 1.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch

from ..errors import TrainingError


def example_input(info: dict[str, Any], batch: int = 1, seed: int = 0, scale: int = 1) -> torch.Tensor:
    """Random (batch, C, *image_size * scale) input in [0, 1] (export and its checks)."""
    size = tuple(int(s) * scale for s in info["image_size"])
    channels = int(info.get("in_channels") or info["unet"]["in_channels"])
    return torch.rand(batch, channels, *size, generator=torch.Generator().manual_seed(seed))


def dynamic_shapes(example: torch.Tensor) -> tuple[dict[int, Any], ...]:
    """Every axis but the channels is dynamic: (B, C, *S) -> {0, 2, 3(, 4)}: Dim.AUTO."""
    return ({i: torch.export.Dim.AUTO for i in range(example.dim()) if i != 1},)


def export_program(model: torch.nn.Module, example: torch.Tensor) -> torch.export.ExportedProgram:
    model = model.eval().requires_grad_(False)  # an inference graph: no autograd state in it
    return torch.export.export(model, (example,), dynamic_shapes=dynamic_shapes(example))


def check_close(name: str, got: torch.Tensor, want: torch.Tensor, atol: float = 1e-4) -> float:
    err = float((got.float() - want.float()).abs().max())
    if not err <= atol:
        raise TrainingError(f"{name}: exported model differs from PyTorch by {err:.3g} (> {atol}); not writing a wrong export")
    return err


def to_torch_export(model: torch.nn.Module, info: dict[str, Any], path: Path, check: bool = True) -> Path:
    """Export ``model`` and save it to ``path`` (.pt2) with ``info`` as extra file
    ``localdisc.json``; with ``check``, the saved program must reproduce the model on another
    batch size and image size before the file appears."""

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    program = export_program(model, example_input(info, batch=2))
    tmp = path.with_name(f".{path.name}.tmp")
    torch.export.save(program, str(tmp), extra_files={"localdisc.json": json.dumps(info)})
    if check:
        loaded = torch.export.load(str(tmp)).module()
        for x in (example_input(info, batch=3, seed=1), example_input(info, batch=1, seed=2, scale=2)):
            with torch.no_grad():
                check_close(str(path), loaded(x), model(x))
    tmp.replace(path)
    return path
