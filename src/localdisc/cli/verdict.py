"""``localdisc verdict --data LABELED --init RUN --out DIR``: does pretraining help on my data?"""

from __future__ import annotations

import argparse

from ..tasks.verdict import run_verdict
from .main import HelpFormatter, add_command


def register(sub) -> None:
    p = add_command(sub, "verdict",
        description="Does a pretrained run help on YOUR few labeled images (5-20 are enough to ask)? Repeated k-fold "
        "cross-validation over them: fine-tune from random init and from each --init run on the same folds, score every "
        "held-out image, and compare per image with a 95 percent CI over images and repetitions. Ends in one line per run: "
        "helps / hurts / cannot tell, by how much, at what compute. Pretrain first with `localdisc pretrain`.",
        formatter_class=HelpFormatter,
    )
    p.add_argument("--data", required=True, help="your labeled images: an images/ + masks/ folder, a manifest .csv, an MSD folder or any layout spec such as cxr:PATH")
    p.add_argument("--init", nargs="+", required=True, metavar="RUN", help="pretraining run(s) to compare with random init")
    p.add_argument("--out", required=True, help="output folder (verdict.md, verdict.json, per_image.csv, the runs)")
    p.add_argument("--folds", type=int, default=5, help="k of the k-fold cross-validation (each image is held out once per repetition)")
    p.add_argument("--repeats", type=int, default=2, help="repetitions with another shuffle of the images")
    p.add_argument("--steps", type=int, default=300, help="fine-tuning steps per run, the same for every initialization: the length you would train with (too few, and a pretrained start wins by its head start)")
    p.add_argument("--image-size", type=int, nargs="+", default=None, help="training size (default: the data's own resolution)")
    p.add_argument("--batch-size", type=int, default=4, help="fine-tuning batch size")
    p.add_argument("--budget-minutes", type=float, default=0.0, help="start no new repetition after this many minutes (0 = no limit)")
    p.add_argument("--seed", type=int, default=0, help="seed of the shuffles and the fine-tuning")
    p.add_argument("--device", default="auto", help="auto (a GPU when there is one) | cpu | cuda | cuda:N")
    p.add_argument("--overwrite", action="store_true", help="replace an earlier verdict in --out (files you put there stay)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    options = {"batch_size": args.batch_size, "device": args.device, **({"image_size": tuple(args.image_size)} if args.image_size else {})}
    run_verdict(args.data, args.init, args.out, folds=args.folds, repeats=args.repeats, steps=args.steps, seed=args.seed,
                budget_minutes=args.budget_minutes, overwrite=args.overwrite, **options)
    return 0
