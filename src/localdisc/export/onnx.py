"""ONNX export (TorchScript-based exporter; batch and spatial axes dynamic).

``onnx``/``onnxruntime`` are optional: imported only here, with a clear error when absent.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..errors import ConfigError

OPSET = 17


def to_onnx(model: torch.nn.Module, info: dict[str, Any], path: Path, check: bool = True) -> Path:
    """Write ``path`` (.onnx): input "image" (B, C, *S) float32 -> output "logits" (B, K, *S)."""
    from . import example_input

    try:
        import onnx  # noqa: F401
    except ImportError as e:
        raise ConfigError("ONNX export needs the `onnx` package (pip install onnx onnxruntime)") from e
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    spatial = {i + 2: f"s{i}" for i in range(len(info["image_size"]))}
    axes = {"image": {0: "batch", **spatial}, "logits": {0: "batch", **spatial}}
    tmp = path.with_name(f".{path.name}.tmp")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # tracer warnings about python-side shape checks
        torch.onnx.export(model.eval(), (example_input(info),), str(tmp), dynamo=False, input_names=["image"], output_names=["logits"], dynamic_axes=axes, opset_version=OPSET)
    if check:
        x = example_input(info, batch=2, seed=1)
        got = run_onnx(tmp, x)
        with torch.no_grad():
            from .torchscript import check_close

            check_close(str(path), torch.from_numpy(got), model(x))
    tmp.replace(path)
    return path


def run_onnx(path: str | Path, x: torch.Tensor) -> np.ndarray:
    """Logits of an exported model on ``x`` with onnxruntime (CPU)."""
    try:
        import onnxruntime as ort
    except ImportError as e:
        raise ConfigError("running ONNX models needs the `onnxruntime` package") from e
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return session.run(None, {"image": x.detach().cpu().numpy().astype(np.float32)})[0]
