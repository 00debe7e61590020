"""``localdisc export RUN --format F --out PATH``: deployable files from a finished run."""

from __future__ import annotations

import argparse

from ..export import FORMATS
from .main import HelpFormatter


def register(sub) -> None:
    p = sub.add_parser(
        "export",
        help="export a fine-tuned network (TorchScript, ONNX, safetensors, MONAI bundle) or a pretrained encoder",
        description=(
            "Export a finished run. Fine-tuning runs: torchscript | onnx | safetensors | monai-bundle (2D) | encoder. "
            "Pretraining runs: encoder (encoder.* weights + JSON config, for transfer). TorchScript/ONNX are "
            "checked against PyTorch on a random input."
        ),
        formatter_class=HelpFormatter,
    )
    p.add_argument("run_dir", metavar="RUN", help="run folder of `localdisc finetune` (model.json) or `localdisc pretrain` (backbone.json)")
    p.add_argument("--format", dest="fmt", choices=FORMATS, required=True, help="what to write")
    p.add_argument("--out", required=True, help="output file (.ts/.onnx/.safetensors; the suffix is added when missing) or folder (monai-bundle)")
    p.add_argument("--weights", default="best", help="fine-tuning runs: best (best validation Dice) | last | a file name in RUN")
    p.add_argument("--no-check", dest="check", action="store_false", help="skip comparing TorchScript/ONNX outputs with PyTorch")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..export import export_run

    path = export_run(args.run_dir, args.fmt, args.out, which=args.weights, check=args.check)
    print(f"exported {args.fmt}: {path}")
    return 0
