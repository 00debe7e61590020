"""``localdisc evaluate RUN``: score a fine-tuned run on a split at original resolution."""

from __future__ import annotations

import argparse

from ..errors import ConfigError
from ..tasks.evaluate import evaluate, format_summary
from .main import HelpFormatter, add_command


def register(sub) -> None:
    p = add_command(sub, "evaluate",
        description="Predict every image of a split at the run's image size, resample to the original size and "
        "score there. Writes per_image.csv, summary.json, predictions/ and overlays/.",
        formatter_class=HelpFormatter,
    )
    p.add_argument("run_dir", metavar="RUN", help="folder of a finished `localdisc finetune` run")
    p.add_argument("--data", default=None, help="data spec (default: the data the run was trained on)")
    p.add_argument("--split", choices=["train", "val", "test", "all"], default="test", help="which images to score (splits are rebuilt with the run's seeds)")
    p.add_argument("--out", default=None, help="output folder (default: RUN/eval-SPLIT)")
    p.add_argument("--overwrite", action="store_true", help="replace an earlier evaluation in --out (all of its outputs; files you put there stay)")
    p.add_argument("--checkpoint", choices=["best", "last"], default="best", help="best (the best validation Dice) or last (the final step)")
    p.add_argument("--device", default="auto", help="auto (a GPU when there is one) | cpu | cuda | cuda:N")
    p.add_argument("--max-overlays", type=int, default=100, help="draw overlays for at most N images (0 = none): the worst, median and best by Dice, then spread over the ranking")
    p.add_argument("--save-probabilities", action="store_true", help="also write each image's class probabilities (probabilities/: .npy, or NIfTI with the source's geometry for volumes)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    if args.max_overlays < 0:
        raise ConfigError(f"--max-overlays must be >= 0, got {args.max_overlays}")

    summary = evaluate(args.run_dir, args.data, args.split, args.out, args.checkpoint, args.device,
                       overlays=args.max_overlays > 0, max_overlays=args.max_overlays, save_probabilities=args.save_probabilities, overwrite=args.overwrite)
    print(f"{summary['n_images']} {summary['split']} images of {summary['data']}")
    print(format_summary(summary))
    print(f"results: {summary['out']}")
    return 0
