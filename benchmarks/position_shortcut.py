"""Do LD pixel embeddings describe anatomy or the pixel's place in the image?

A test any dense embedding should pass (localdisc.tasks.position_shortcut): translate an image by
t pixels (edge pixels repeated, so nothing but the content moves) and match each anchor point's
embedding from the original into the translated image (nearest neighbour by cosine similarity
over the whole image). An embedding of content matches at anchor + t; an embedding of position
(which a U-Net can read from its zero padding) matches at the anchor itself. Per run and shift:

- follows: the mean matched displacement along t divided by |t| (1 = follows the content,
  0 = stays at the same place);
- content hits / place hits: the share of anchors matched within 1.5 px of anchor + t / of the
  anchor itself.

Anchors lie on a regular grid (stride 8 px of the model grid), at least max(t) + 8 px inside the
border. Images: the first --images test images of --data, resized to the run's size.

    python benchmarks/position_shortcut.py --run ld=RUN [--run ld-shift=RUN2 ...]

Writes benchmarks/results/NAME.{json,md} (NAME: --name, default position_shortcut).
"""

from __future__ import annotations

import argparse
import json
import sys
import time

import torch

from localdisc.data.datasets import resize_image
from localdisc.data.records import load_sample_image
from localdisc.data.sources import resolve_source
from localdisc.runtime.provenance import write_result
from localdisc.tasks.discover import load_run_model
from localdisc.tasks.position_shortcut import shift_table


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--run", action="append", required=True, metavar="NAME=RUN", help="a pretraining run with pixel embeddings (repeatable)")
    p.add_argument("--data", default="cxr:/work/shared/data/CXR")
    p.add_argument("--images", type=int, default=16, help="test images used")
    p.add_argument("--shifts", type=int, nargs="+", default=[4, 8, 16], help="translations in model-grid pixels")
    p.add_argument("--device", default="cpu")
    p.add_argument("--name", default="position_shortcut")
    p.add_argument("--results", default="benchmarks/results")
    args = p.parse_args(argv)
    t0 = time.time()
    samples = [s for s in resolve_source(args.data) if s.split == "test"][: args.images]
    results = {}
    for item in args.run:
        name, _, path = item.partition("=")
        model = load_run_model(path, args.device)
        embed = lambda x: model.method.embed(x.to(model.device)).float().cpu()  # noqa: E731
        images = [resize_image(torch.from_numpy(load_sample_image(s, model.channels)).float(), model.size)[None] for s in samples]
        results[name] = {"run": path, "size": list(model.size), "by_shift": shift_table(embed, images, args.shifts)}
        print(name, json.dumps(results[name]["by_shift"]), flush=True)

    lines = ["# Do LD embeddings follow the content or the place in the image?",
             f"- {len(samples)} test images of `{args.data}`; each translated by t model-grid pixels; anchors every 8 px matched by nearest embedding",
             "- follows: mean matched displacement along t over |t| (1 = the embedding follows the content, 0 = it stays at the same place); "
             "hits: share of anchors matched within 1.5 px of the moved content / of the unmoved place", "",
             "| run | t (px) | follows | content hits | place hits |", "|---|---:|---:|---:|---:|"]
    for name, r in results.items():
        lines += [f"| {name} | {t} | {row['follows']:.2f} | {row['content_hits']:.0%} | {row['place_hits']:.0%} |" for t, row in r["by_shift"].items()]
    payload = {"data": args.data, "num_images": len(samples), "results": results}
    _, md = write_result(args.results, args.name, payload, lines, device=args.device, argv=None if argv is None else ["benchmarks/position_shortcut.py", *argv],
                         wall_s=time.time() - t0)
    print(md.read_text())
    return 0


if __name__ == "__main__":
    sys.exit(main())
