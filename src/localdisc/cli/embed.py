"""``localdisc embed RUN --data DATA --out DIR``: pixel (voxel) embeddings and cluster maps of a
pretraining run, for use in other tools (see :mod:`localdisc.tasks.embed` for the files)."""

from __future__ import annotations

import argparse

from ..data.sources import pick_samples
from ..runtime.outputs import check_not_inputs, data_inputs, prepare_output_folder
from ..tasks.discover import load_run_model
from ..tasks.embed import embed_images
from .main import add_command


def register(sub) -> None:
    p = add_command(
        sub,
        "embed",
        description="Write the per-pixel embeddings of a pretraining run for every image of DATA: embeddings/ (.npy, or NIfTI "
        "with the source's geometry for volumes), clusters/ (argmax cluster at the source's size; LD stage-2 runs), "
        "pictures/ (input | principal components | clusters) and embed.json.",
    )
    p.add_argument("run_dir", metavar="RUN", help="pretraining run folder (any method; LD gives unit embeddings and clusters)")
    p.add_argument("--data", required=True, help="images: folder, manifest CSV or layout spec (cxr:PATH, drive:PATH, ...)")
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--overwrite", action="store_true", help="replace localdisc's earlier outputs in --out (files you put there stay)")
    p.add_argument("--split", choices=["train", "val", "test", "all"], default="all", help="use images of this split (plus those without one)")
    p.add_argument("--max-images", type=int, default=0, help="embed at most N images (0 = all)")
    p.add_argument("--max-overlays", type=int, default=16, help="write pictures for at most N images (0 = none)")
    p.add_argument("--device", default="auto", help="auto (a GPU when there is one) | cpu | cuda | cuda:N")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    model = load_run_model(args.run_dir, args.device)
    samples = pick_samples(args.data, args.split, args.max_images)
    check_not_inputs(args.out, (f for s in samples for f in (s.image, s.mask, s.fov)))
    prepare_output_folder(args.out, [*data_inputs(args.data), args.run_dir], args.overwrite, "embed")
    info = embed_images(model, samples, args.out, max_pictures=args.max_overlays)
    print(f"embed: {len(samples)} images, {info['embedding_dim']}-dimensional embeddings on a {'x'.join(map(str, info['grid_size']))} grid; "
          f"files in {args.out}")
    return 0
