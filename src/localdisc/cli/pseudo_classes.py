"""``localdisc pseudo-classes assign RUN --data DATA --out CSV``: give new images the pseudo-class
of a cluster-guided contrastive pretraining run (nearest centroid in the run's feature space)."""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from ..methods.cluster_contrast.pseudo_classes import assign_new_images, write_csv
from .main import HelpFormatter, add_command


def register(sub) -> None:
    p = add_command(sub, "pseudo-classes",
        description="Pseudo-classes of `localdisc pretrain --method cluster-contrast` runs "
        "(RUN/pseudo_classes.csv, .json and the feature network's weights).",
        formatter_class=HelpFormatter,
    )
    actions = p.add_subparsers(dest="action", metavar="ACTION", required=True)
    a = actions.add_parser(
        "assign",
        help="assign new images to a run's pseudo-classes (nearest centroid)",
        description="Embed the images with the network that produced the run's pseudo-classes (its "
        "autoencoder, or the encoder snapshot of the last refresh) and write image, pseudo_class, "
        "distance_to_centroid per image.",
        formatter_class=HelpFormatter,
    )
    a.add_argument("run_dir", metavar="RUN", help="folder of a cluster-contrast pretraining run")
    a.add_argument("--data", required=True, help="images to assign: folder, manifest CSV or layout spec")
    a.add_argument("--out", required=True, help="CSV file to write")
    a.add_argument("--device", default="auto", help="auto (a GPU when there is one) | cpu | cuda | cuda:N")
    a.add_argument("--batch-size", type=int, default=16, help="images per batch")
    a.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    rows = assign_new_images(args.run_dir, args.data, device=args.device, batch_size=args.batch_size)
    write_csv(Path(args.out), [r["image"] for r in rows], np.array([r["pseudo_class"] for r in rows]), np.array([r["distance_to_centroid"] for r in rows]))
    counts = np.bincount([r["pseudo_class"] for r in rows])
    print(f"assigned {len(rows)} images to pseudo-classes: " + ", ".join(f"{k}: {c}" for k, c in enumerate(counts) if c))
    print(f"wrote {args.out}")
    return 0
