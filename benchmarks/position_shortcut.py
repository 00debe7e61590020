"""Do LD pixel embeddings describe anatomy or the pixel's place in the image?

A test any dense embedding should pass: translate an image by t pixels (edge pixels repeated,
so nothing but the content moves) and match each anchor point's embedding from the original
into the translated image (nearest neighbour by cosine similarity over the whole image). An
embedding of content matches at anchor + t; an embedding of position (which a U-Net can read
from its zero padding) matches at the anchor itself. Reported per run and shift:

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
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from localdisc.runtime.provenance import provenance, provenance_markdown


def translate(x: torch.Tensor, t: int) -> torch.Tensor:
    """(1, C, H, W) -> the content moved by t pixels down and right, edge pixels repeated."""
    if t == 0:
        return x
    return F.pad(x, (t, 0, t, 0), mode="replicate")[..., : x.shape[-2], : x.shape[-1]]


@torch.no_grad()
def shift_scores(embed, image: torch.Tensor, t: int, stride: int = 8) -> dict[str, float]:
    """image (1, C, H, W) on the model grid; embed: (1, C, H, W) -> (1, D, H, W)."""
    H, W = image.shape[-2:]
    margin = t + 8
    ys, xs = torch.meshgrid(torch.arange(margin, H - margin, stride), torch.arange(margin, W - margin, stride), indexing="ij")
    anchors = torch.stack([ys.flatten(), xs.flatten()], 1)  # (A, 2)
    v0 = F.normalize(embed(image)[0], dim=0)  # (D, H, W)
    v1 = F.normalize(embed(translate(image, t))[0], dim=0)
    desc = v0[:, anchors[:, 0], anchors[:, 1]].T  # (A, D)
    idx = (desc @ v1.flatten(1)).argmax(1)
    match = torch.stack([idx // W, idx % W], 1).float()
    disp = match - anchors.float()
    true = torch.tensor([t, t], dtype=torch.float32)
    follows = float((disp @ true).mean() / (true @ true)) if t else float("nan")
    return {"follows": follows, "content_hits": float(((disp - true).norm(dim=1) <= 1.5).float().mean()),
            "place_hits": float((disp.norm(dim=1) <= 1.5).float().mean()), "anchors": int(len(anchors))}


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

    from localdisc.data.datasets import resize_image
    from localdisc.data.records import load_sample_image
    from localdisc.data.sources import resolve_source
    from localdisc.tasks.discover import load_run_model

    samples = [s for s in resolve_source(args.data) if s.split == "test"][: args.images]
    results = {}
    for item in args.run:
        name, _, path = item.partition("=")
        model = load_run_model(path, args.device)
        embed = lambda x: model.method.embed(x.to(model.device)).float().cpu()  # noqa: E731
        images = [resize_image(torch.from_numpy(load_sample_image(s, model.channels)).float(), model.size)[None] for s in samples]
        rows = {}
        for t in args.shifts:
            per = [shift_scores(embed, im, t) for im in images]
            rows[str(t)] = {k: float(np.mean([r[k] for r in per])) for k in ("follows", "content_hits", "place_hits")}
        results[name] = {"run": path, "size": list(model.size), "by_shift": rows}
        print(name, json.dumps(rows), flush=True)

    prov = provenance(args.device, None if argv is None else ["benchmarks/position_shortcut.py", *argv])
    result = {**prov, "wall_s": round(time.time() - t0, 1), "data": args.data, "num_images": len(samples), "results": results}
    out = Path(args.results)
    out.mkdir(parents=True, exist_ok=True)
    (out / f"{args.name}.json").write_text(json.dumps(result, indent=2))
    lines = ["# Do LD embeddings follow the content or the place in the image?", "", *(f"- {x}" for x in provenance_markdown(prov, result["wall_s"])),
             f"- {len(samples)} test images of `{args.data}`; each translated by t model-grid pixels; anchors every 8 px matched by nearest embedding",
             "- follows: mean matched displacement along t over |t| (1 = the embedding follows the content, 0 = it stays at the same place); "
             "hits: share of anchors matched within 1.5 px of the moved content / of the unmoved place", "",
             "| run | t (px) | follows | content hits | place hits |", "|---|---:|---:|---:|---:|"]
    for name, r in results.items():
        for t, row in r["by_shift"].items():
            lines.append(f"| {name} | {t} | {row['follows']:.2f} | {row['content_hits']:.0%} | {row['place_hits']:.0%} |")
    (out / f"{args.name}.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
