"""ONNX export with torch's dynamo exporter (``torch.onnx.export(..., dynamo=True)``, built on
``torch.export``); batch and spatial axes dynamic.

``onnx``/``onnxscript``/``onnxruntime`` are optional (the ``export`` extra): imported only here,
with a clear error when absent.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..errors import ConfigError

OPSET = 18  # the dynamo exporter's lowest supported opset


def to_onnx(model: torch.nn.Module, info: dict[str, Any], path: Path, check: bool = True) -> Path:
    """Write ``path`` (.onnx): input "image" (B, C, *S) float32 -> output "logits" (B, K, *S)."""
    from . import example_input

    from .torch_export import check_close, dynamic_shapes

    try:
        import onnx  # noqa: F401
        import onnxscript  # noqa: F401
    except ImportError as e:
        raise ConfigError("ONNX export needs the `onnx` and `onnxscript` packages (pip install 'localdisc[export]')") from e
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    example = example_input(info, batch=2)  # batch 1 would fix the batch axis to 1
    model = model.eval().requires_grad_(False)
    torch.onnx.export(model, (example,), str(tmp), dynamo=True, verbose=False, input_names=["image"], output_names=["logits"],
                      dynamic_shapes=dynamic_shapes(example), opset_version=OPSET, external_data=False)
    if check:
        for x in (example_input(info, batch=3, seed=1), example_input(info, batch=1, seed=2, scale=2)):
            got = run_onnx(tmp, x)
            with torch.no_grad():
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
