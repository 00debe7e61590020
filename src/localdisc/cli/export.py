"""``localdisc export RUN --format F --out PATH``: deployable files from a finished run."""

from __future__ import annotations

import argparse

from ..export import FORMATS, export_run
from .main import HelpFormatter, add_command


def register(sub) -> None:
    p = add_command(sub, "export",
        description=(
            "Export a finished run. Fine-tuning runs: torch-export (a torch.export program, .pt2; load it with "
            "torch.export.load(PATH).module()) | onnx | safetensors | monai-bundle | encoder. "
            "Pretraining runs: encoder (encoder.* weights + JSON config, for transfer). torch-export/ONNX files are "
            "checked against PyTorch on a random input."
        ),
        formatter_class=HelpFormatter,
    )
    p.add_argument("run_dir", metavar="RUN", help="run folder of `localdisc finetune` (model.json) or `localdisc pretrain` (backbone.json)")
    p.add_argument("--format", dest="fmt", choices=FORMATS, required=True, help="what to write")
    p.add_argument("--out", required=True, help="output file (.pt2/.onnx/.safetensors; the suffix is added when missing) or folder (monai-bundle)")
    p.add_argument("--checkpoint", choices=["best", "last"], default="best", help="fine-tuning runs: best (the best validation Dice) or last (the final step)")
    p.add_argument("--overwrite", action="store_true", help="replace an existing output file (or an earlier exported bundle); a run's own files are never replaced")
    p.add_argument("--no-check", dest="check", action="store_false", help="skip comparing the torch-export/ONNX outputs with PyTorch")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    path = export_run(args.run_dir, args.fmt, args.out, which=args.checkpoint, check=args.check, overwrite=args.overwrite)
    print(f"exported {args.fmt}: {path}")
    return 0
