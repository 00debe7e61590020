"""``localdisc discover``: structures without labels, from a pretrained LD (or ld-shape) run.

    localdisc discover --run RUN --data SPEC --out DIR [--mode clusters|shape] [--masks-from-data]

``clusters``: per-image cluster maps (argmax of the clustering head) as DIR/maps/*.npy plus color
maps and overlays in DIR/overlays/; with --masks-from-data, clusters are matched to the labeled
structures once over the dataset (Hungarian on Dice) and DIR/metrics.json holds Dice per
structure. ``shape`` (an ``ld-shape`` run): the guided structure as DIR/maps/*.png and overlays;
with labels, Dice/IoU/accuracy/AUC of the foreground inside the field of view.
Data specs include folders, manifests, cxr:PATH, drive:PATH and synthetic-fundus[:N].
"""

from __future__ import annotations

import argparse
import json

from ..data.sources import resolve_source, select_split


def register(sub) -> None:
    p = sub.add_parser("discover", help="unsupervised cluster maps / shape-guided structure discovery", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--run", required=True, help="pretraining run folder (ld stage 2 for clusters, ld-shape for shape)")
    p.add_argument("--data", required=True, help="images: folder, manifest CSV or layout spec (drive:PATH, cxr:PATH, synthetic-fundus:N, ...)")
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--mode", choices=["clusters", "shape"], default="clusters", help="clusters: argmax of the clustering head; shape: the shape-guided channel 0 (default clusters)")
    p.add_argument("--masks-from-data", action="store_true", help="score against the labels the data provides (Hungarian-matched Dice for clusters)")
    p.add_argument("--rule", choices=["threshold", "argmax", "prototype"], default="threshold", help="shape mode: a_0 > --threshold; argmax (pixels whose largest cluster is channel 0); or prototype: softmax_k cos(v, r_k)/0.2 channel 0 > --threshold (default threshold)")
    p.add_argument("--threshold", type=float, default=0.5, help="shape mode: probability threshold (default 0.5)")
    p.add_argument("--split", default="all", help="use samples of this split (plus unassigned); default all")
    p.add_argument("--max-images", type=int, default=0, help="use at most N images (0 = all)")
    p.add_argument("--pictures", type=int, default=16, help="write color maps/overlays for the first N images")
    p.add_argument("--device", default="cpu", help="cpu | cuda | cuda:N")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..tasks.discover import discover, load_run_model

    model = load_run_model(args.run, args.device)
    samples = select_split(resolve_source(args.data), args.split)
    if args.max_images:
        samples = samples[: args.max_images]
    metrics = discover(model, samples, args.out, args.mode, args.masks_from_data, args.rule, args.threshold, args.pictures)
    if args.masks_from_data:
        shown = metrics.get("dice") if args.mode == "clusters" else {"dice": metrics.get("dice")}
        print(f"discover: {len(samples)} images; Dice {json.dumps(shown)}; results in {args.out}")
    else:
        print(f"discover: {len(samples)} images; maps in {args.out}")
    return 0
