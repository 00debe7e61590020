"""``localdisc finetune``: supervised training of the U-Net, from random init or a pretraining run."""

from __future__ import annotations

import argparse

from ..config import add_dataclass_args, config_from_args
from ..train.finetune import FinetuneConfig, finetune
from .main import HelpFormatter


def register(sub) -> None:
    p = sub.add_parser(
        "finetune",
        help="supervised segmentation training (random init or --init a pretraining run), with label budgets",
        description="Fine-tune a U-Net on labeled images. Validation is carved from the training split; "
        "the best validation Dice is kept as best.safetensors. Evaluate with `localdisc evaluate RUN`.",
        formatter_class=HelpFormatter,
    )
    p.add_argument("--config", help="YAML/JSON file with options (command-line options override it)")
    add_dataclass_args(p, FinetuneConfig)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    cfg = config_from_args(FinetuneConfig, args, args.config)
    out = finetune(cfg)
    print(f"fine-tuning finished: {out}  (evaluate with: localdisc evaluate {out})")
    return 0
