"""``localdisc finetune``: supervised training of the U-Net, from random init or a pretraining run."""

from __future__ import annotations

import argparse

from ..config import add_dataclass_args, config_from_args, load_config_file, resume_base
from ..tasks.guard import guarded_finetune
from ..train.finetune import FinetuneConfig
from .main import HelpFormatter, add_command, require


def register(sub) -> None:
    p = add_command(sub, "finetune",
        description="Fine-tune a U-Net on labeled images. Validation is carved from the training split; "
        "the best validation Dice is kept as best.safetensors. With --init, a twin run from random init is trained too and the one with the "
        "higher validation Dice is kept (--guard false: the pretrained one only). Evaluate with `localdisc evaluate RUN`. "
        "--data and --out are required (from the command line or --config).",
        formatter_class=HelpFormatter,
    )
    p.add_argument("--config", help="YAML/JSON file with options (command-line options override it)")
    add_dataclass_args(p, FinetuneConfig, required=("data", "out"))
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    config_file = resume_base(args, args.config)
    require(args, load_config_file(config_file) if config_file else {}, "data", "out")
    cfg = config_from_args(FinetuneConfig, args, config_file)
    out = guarded_finetune(cfg)
    if cfg.dry_run:
        return 0
    print(f"fine-tuning finished: {out}  (evaluate with: localdisc evaluate {out})")
    return 0
