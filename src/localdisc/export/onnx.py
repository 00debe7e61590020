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
from ..runtime.model_card import card_fields
from .torch_export import check_close, dynamic_shapes, example_input

OPSET = 18  # the dynamo exporter's lowest supported opset


def to_onnx(model: torch.nn.Module, info: dict[str, Any], path: Path, check: bool = True) -> Path:
    """Write ``path`` (.onnx): input "image" (B, C, *S) float32 -> output "logits" (B, K, *S)."""

    try:
        import onnx  # noqa: F401  # deferred: heavy optional dependency, checked when ONNX is asked for
        import onnxscript  # noqa: F401  # deferred: (the same)
    except ImportError as e:
        raise ConfigError("ONNX export needs the `onnx` and `onnxscript` packages (pip install 'localdisc[export]')") from e
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    example = example_input(info, batch=2)  # batch 1 would fix the batch axis to 1
    model = model.eval().requires_grad_(False)
    torch.onnx.export(model, (example,), str(tmp), dynamo=True, verbose=False, input_names=["image"], output_names=["logits"],
                      dynamic_shapes=dynamic_shapes(example), opset_version=OPSET, external_data=False)
    _describe(tmp, info)
    if check:
        for x in (example_input(info, batch=3, seed=1), example_input(info, batch=1, seed=2, scale=2)):
            got = run_onnx(tmp, x)
            with torch.no_grad():
                check_close(str(path), torch.from_numpy(got), model(x))
    tmp.replace(path)
    return path


def _describe(path: Path, info: dict[str, Any]) -> None:
    """The model card as ONNX metadata_props, and readable names for the dynamic axes
    (batch, depth, height, width) instead of the exporter's s77."""
    import onnx  # deferred: heavy optional dependency, loaded only when used

    model = onnx.load(str(path))
    axes = ["batch", "channels", *(["depth"] if len(info["image_size"]) == 3 else []), "height", "width"]
    renamed = {}
    for value in [*model.graph.input, *model.graph.output]:
        for i, dim in enumerate(value.type.tensor_type.shape.dim):
            if dim.dim_param:
                renamed[dim.dim_param] = axes[i]
                dim.dim_param = axes[i]
    for value in model.graph.value_info:  # intermediate shapes use the same symbols
        for dim in value.type.tensor_type.shape.dim:
            if dim.dim_param in renamed:
                dim.dim_param = renamed[dim.dim_param]
    del model.metadata_props[:]
    for key, text in {**card_fields(info), "input": "image: float32 (batch, channels, *spatial) in [0, 1]", "output": "logits: (batch, classes, *spatial)"}.items():
        entry = model.metadata_props.add()
        entry.key, entry.value = key, text
    onnx.save(model, str(path))


def run_onnx(path: str | Path, x: torch.Tensor) -> np.ndarray:
    """Logits of an exported model on ``x`` with onnxruntime (CPU)."""
    try:
        import onnxruntime as ort  # deferred: heavy optional dependency, loaded only when used
    except ImportError as e:
        raise ConfigError("running ONNX models needs the `onnxruntime` package") from e
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return session.run(None, {"image": x.detach().cpu().numpy().astype(np.float32)})[0]
