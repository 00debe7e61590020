"""``localdisc predict MODEL --data IMAGES --out DIR``: masks for new images, no labels needed."""

from __future__ import annotations

import argparse

from ..tasks.predict import predict
from .main import HelpFormatter, add_command


def register(sub) -> None:
    p = add_command(sub, "predict",
        description="Segment new images or volumes with a fine-tuned run (or an exported .safetensors model): the run's own "
        "preprocessing and resolution (a sliding window where it trained on patches); masks at each image's own size and "
        "geometry (PNG; NIfTI with the source's affine), predictions.csv with per-image areas, optional probabilities, "
        "overlays and flip test-time augmentation. Masks in the data are ignored (use `localdisc evaluate` to score).",
        formatter_class=HelpFormatter,
    )
    p.add_argument("model", metavar="MODEL", help="folder of a finished `localdisc finetune` run, or an exported .safetensors (with its .json)")
    p.add_argument("--data", required=True, help="images to segment: a folder, one file, a manifest .csv or any --data spec")
    p.add_argument("--out", required=True, help="output folder (new or empty; --overwrite replaces an earlier prediction there)")
    p.add_argument("--checkpoint", choices=["best", "last"], default="best", help="best (the best validation Dice) or last (the final step)")
    p.add_argument("--tta", action="store_true", help="flip test-time augmentation: average with the left-right mirrored prediction")
    p.add_argument("--save-probabilities", action="store_true", help="also write class probabilities (probabilities/: .npy, or NIfTI for volumes)")
    p.add_argument("--max-overlays", type=int, default=10, help="draw overlays for the first N images (0 = none)")
    p.add_argument("--max-images", type=int, default=0, help="segment only the first N images (0 = all)")
    p.add_argument("--device", default="auto", help="auto (a GPU when there is one) | cpu | cuda | cuda:N")
    p.add_argument("--overwrite", action="store_true", help="replace localdisc's earlier outputs in --out (files you put there stay)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    predict(args.model, args.data, args.out, checkpoint=args.checkpoint, device=args.device, tta=args.tta,
            save_probabilities=args.save_probabilities, max_overlays=args.max_overlays, max_images=args.max_images, overwrite=args.overwrite)
    return 0
