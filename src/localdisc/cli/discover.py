"""``localdisc discover``: structures without labels, from a pretrained LD (or ld-shape) run.

    localdisc discover RUN --data DATA --out DIR [--mode clusters|kmeans|shape] [--masks-from-data]

``clusters``: per-image cluster maps (argmax of the clustering head) as DIR/maps/*.npy plus color
maps and overlays in DIR/overlays/; with --masks-from-data, clusters are matched to the labeled
structures once over the dataset (Hungarian on Dice) and DIR/metrics.json holds Dice per
structure. ``kmeans``: the same maps from k-means (--num-clusters) on pixel features
(--features: the run's deepest encoder level beside grey value and position by default, which
found organs better than the head on chest X-rays), fitted on the given images' pixels; the
fitted centres go to DIR/kmeans.json. ``shape`` (an ``ld-shape`` run): the guided structure as DIR/maps/*.png and overlays;
with labels, Dice/IoU/accuracy/AUC of the foreground inside the field of view.
Data specs include folders, manifests, cxr:PATH, drive:PATH and synthetic-fundus[:N].
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from ..data.records import load_sample_image
from ..data.sources import pick_samples
from ..runtime.outputs import check_not_inputs, data_inputs, prepare_output_folder
from ..tasks.discover import discover, load_run_model
from ..tasks.pixel_features import PixelKMeans
from .main import add_command


def register(sub) -> None:
    p = add_command(sub, "discover", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("run_dir", metavar="RUN", help="pretraining run folder (an ld run for clusters, an ld-shape run for shape)")
    p.add_argument("--data", required=True, help="images: folder, manifest CSV or layout spec (drive:PATH, cxr:PATH, synthetic-fundus:N, ...)")
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--overwrite", action="store_true", help="replace localdisc's earlier outputs in --out (files you put there stay)")
    p.add_argument("--mode", choices=["clusters", "kmeans", "shape"], default="clusters", help="clusters: argmax of the clustering head; kmeans: k-means on pixel features (see --features); shape: the shape-guided channel 0 (default clusters)")
    p.add_argument("--features", default="deep+intensity+position", help="kmeans mode: pixel features joined by +: deep (the network's deepest level: which region a pixel lies in), "
                   "embedding (the pixel embedding: local texture), intensity (grey value), position (where the pixel is) (default deep+intensity+position)")
    p.add_argument("--num-clusters", type=int, default=4, help="kmeans mode: number of clusters (default 4)")
    p.add_argument("--seed", type=int, default=0, help="kmeans mode: seed of the pixel sample and of k-means (default 0)")
    p.add_argument("--masks-from-data", action="store_true", help="score against the labels the data provides (Hungarian-matched Dice for clusters)")
    p.add_argument("--rule", choices=["argmax", "threshold", "prototype"], default="argmax", help="shape mode: argmax (pixels whose most likely cluster is the guided one; the best rule in our tests), threshold (its probability > --threshold), or prototype (softmax over cosine similarity to each cluster's mean embedding, at temperature 0.2, > --threshold) (default: argmax)")
    p.add_argument("--threshold", type=float, default=0.5, help="shape mode: probability threshold (default 0.5)")
    p.add_argument("--split", choices=["train", "val", "test", "all"], default="all", help="use samples of this split (plus those without one) (default: all)")
    p.add_argument("--max-images", type=int, default=0, help="use at most N images (0 = all)")
    p.add_argument("--max-overlays", type=int, default=16, help="write color maps/overlays for at most N images (0 = none) (default: 16)")
    p.add_argument("--device", default="auto", help="auto (a GPU when there is one) | cpu | cuda | cuda:N")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    model = load_run_model(args.run_dir, args.device)
    samples = pick_samples(args.data, args.split, args.max_images)
    check_not_inputs(args.out, (f for s in samples for f in (s.image, s.mask, s.fov)))
    prepare_output_folder(args.out, [*data_inputs(args.data), args.run_dir], args.overwrite, "discover")
    kmeans = None
    if args.mode == "kmeans":
        kmeans = PixelKMeans(args.features, args.num_clusters, model.size, model.method, seed=args.seed)
        kmeans.fit_images((load_sample_image(s, model.channels) for s in samples), len(samples))
        Path(args.out).mkdir(parents=True, exist_ok=True)
        (Path(args.out) / "kmeans.json").write_text(json.dumps({"run": str(args.run_dir), "data": args.data, "num_images": len(samples), **kmeans.describe()}, indent=2))
    metrics = discover(model, samples, args.out, args.mode, args.masks_from_data, args.rule, args.threshold, args.max_overlays, kmeans=kmeans)
    if args.masks_from_data:
        shown = metrics.get("dice") if args.mode != "shape" else {"dice": metrics.get("dice")}
        print(f"discover: {len(samples)} images; Dice {json.dumps(shown)}; results in {args.out}")
    else:
        print(f"discover: {len(samples)} images; maps in {args.out}")
    return 0
