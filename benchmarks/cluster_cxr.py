"""Plain LD clustering of chest X-rays, scored by Hungarian-matched Dice (no labels in training).

1. Pretrain LD (stage 1 then stage 2 with the clustering head, K=--num-clusters) on the CXR
   TRAIN images (or use --run).
2. Cluster maps (argmax over K) of the TEST images at original resolution; the clusters are
   matched to left lung, right lung and cardiomediastinum (Hungarian on Dice, one cluster per
   structure) and Dice is reported per structure (mean over images, and pooled). Two matchings:
   chosen on the TRAIN images' labels and applied to test (what a user who labels a few images
   to name the clusters gets), and chosen on the test images themselves (optimistic: the
   labels being scored pick the clusters). Class maps follow the cxr layout (the
   cardiomediastinum wins where outlines overlap).
3. Reference point: a "random clusters" baseline (a randomly initialized LD model of the same
   architecture, no training) matched the same way.
4. What a user gets without localdisc, and LD's embeddings without its head: k-means on each
   pixel's (row, col) position alone, on (intensity, row, col), and on the LD embedding v, with
   the number of clusters N chosen on the training images (Hungarian-matched Dice there) from
   --kmeans-clusters, fitted on training pixels, then applied and matched on train as above.

    python benchmarks/cluster_cxr.py [--run RUN] [--quick]

Writes benchmarks/results/cluster_cxr.{json,md} and example overlays under --work.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

from localdisc.report.provenance import provenance, provenance_markdown

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _pretrain import add_pretrain_args, pretrain_config, usable_cpus  # noqa: E402


def train_ld(data: str, out: Path, args, steps: int) -> Path:
    from localdisc.methods import get_method
    from localdisc.methods.ld import LDConfig

    if (out / "model.safetensors").is_file():
        return out
    cfg = pretrain_config(args, data, out, steps, in_channels=1, max_images=args.max_images, lr=args.lr if steps > 1 else 0.0)
    if steps <= 1:  # the untrained reference: one step at lr 0 just writes the run folder
        return get_method("ld").run_schedule(cfg, LDConfig(stage="2", grid=args.grid, num_clusters=args.num_clusters))
    get_method("ld").run_schedule(cfg, LDConfig(stage="both", grid=args.grid, num_clusters=args.num_clusters))
    return out


def pixel_features(kind: str, model, image, size) -> torch.Tensor:
    """(H*W, F) features of one image on the model grid: position (rows/cols in [-1, 1]),
    intensity (z-scored, half weight) + position, or the LD embedding v."""
    import torch.nn.functional as F

    from localdisc.data.datasets import resize_image

    x = resize_image(torch.from_numpy(image).float(), size)[None]
    pos = torch.stack(torch.meshgrid(*[torch.linspace(-1, 1, n) for n in size], indexing="ij"))[None]
    if kind == "position":
        f = pos
    elif kind == "intensity+position":
        f = torch.cat([0.5 * (x.mean(1, keepdim=True) - x.mean()) / x.std().clamp(min=1e-6), pos], 1)
    else:  # "ld embedding", or "ld embedding+position" (v, a unit vector, beside the position)
        with torch.no_grad():
            f = F.normalize(model.method.embed(x.to(model.device)).float().cpu(), dim=1)
        if kind.endswith("+position"):
            f = torch.cat([f, pos], 1)
    return f[0].flatten(1).T


def kmeans_clusters(kind: str, model, train, test, choices, seed: int = 0) -> dict:
    """k-means with N in ``choices`` fitted on training pixels; N and the cluster-to-structure
    matching chosen on the training images, then applied to test (see the module docstring)."""
    import numpy as np
    import torch.nn.functional as F
    from sklearn.cluster import KMeans

    from localdisc.data.records import load_sample_image, load_sample_mask
    from localdisc.tasks.hungarian import ClusterMatcher, one_hot_structures

    size = model.size

    def featurize(samples):
        out = []
        for s in samples:
            image = load_sample_image(s, model.channels)
            out.append((pixel_features(kind, model, image, size).numpy(), image.shape[1:], s))
        return out

    def score(km, data, N, mapping=None):
        matcher = None
        for f, shape, s in data:
            lab = torch.from_numpy(km.predict(f).reshape(size))[None, None].float()
            lab = F.interpolate(lab, size=shape, mode="nearest-exact")[0, 0].long().numpy()
            mask = load_sample_mask(s)
            names = list(s.extra.get("class_names") or [])[1:] or [f"class{c}" for c in range(1, int(mask.max()) + 1)]
            matcher = matcher or ClusterMatcher(N, names)
            matcher.update(lab, one_hot_structures(mask, range(1, len(names) + 1)))
        return matcher.compute(mapping)

    tr, te = featurize(train), featurize(test)
    X = np.concatenate([f for f, _, _ in tr])
    X = X[np.random.default_rng(seed).permutation(len(X))[: 100_000]]
    best = None
    for N in choices:
        km = KMeans(N, n_init=4, random_state=seed).fit(X)
        on_train = score(km, tr, N)
        if best is None or on_train["mean_dice"] > best[1]["mean_dice"]:
            best = (km, on_train, N)
    km, on_train, N = best
    result = score(km, te, N, on_train["mapping"])
    result["matched_on_test"] = score(km, te, N)
    result["num_clusters_chosen_on_train"] = N
    return result


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", default="cxr:/work/shared/data/CXR")
    p.add_argument("--run", default=None, help="an LD stage-2 run (default: train one into --work)")
    p.add_argument("--work", default="benchmarks/_work/cluster_cxr")
    p.add_argument("--num-clusters", type=int, default=16)
    p.add_argument("--lr", type=float, default=1e-3)
    add_pretrain_args(p)
    p.add_argument("--max-images", type=int, default=0, help="pretraining images (0 = all train)")
    p.add_argument("--max-test", type=int, default=0, help="test images (0 = all)")
    p.add_argument("--kmeans-clusters", type=int, nargs="*", default=[3, 4, 6, 8], help="k-means rows: numbers of clusters to choose from on the training images (none: skip those rows)")
    p.add_argument("--device", default="auto")
    p.add_argument("--quick", action="store_true", help="smoke test: tiny model, 4 steps, 4 test images")
    p.add_argument("--results", default="benchmarks/results", help="output folder (quick runs write into --work instead)")
    args = p.parse_args(argv)
    if args.quick:
        args.pretrain_steps, args.image_size, args.batch_size, args.max_images, args.max_test = 4, [64, 64], 2, 8, 4
        args.encoder_channels, args.decoder_channels, args.grid, args.num_clusters = [4, 8, 8], [8, 4], 2, 8
        args.work += "_quick"
    torch.set_num_threads(min(8, usable_cpus()))
    t0 = time.time()

    from localdisc.data.sources import resolve_source
    from localdisc.tasks.discover import discover, load_run_model

    work = Path(args.work)
    device = "cuda" if args.device == "auto" and torch.cuda.is_available() else ("cpu" if args.device == "auto" else args.device)
    runs = {"ld": Path(args.run) if args.run else train_ld(args.data, work / "ld", args, args.pretrain_steps),
            "untrained": train_ld(args.data, work / "untrained", args, 1)}
    samples = resolve_source(args.data)
    test = [s for s in samples if s.split == "test"]
    train = [s for s in samples if s.split != "test"]
    if args.max_test:
        test, train = test[: args.max_test], train[: args.max_test]
    results = {}
    keys = ("mapping", "dice", "dice_std", "dice_pooled", "mean_dice", "num_clusters")
    for name, run in runs.items():
        model = load_run_model(run, device)
        on_train = discover(model, train, work / f"maps_{name}_train", "clusters", with_masks=True, max_pictures=0)
        m = discover(model, test, work / f"maps_{name}", "clusters", with_masks=True, max_pictures=8, mapping=on_train["mapping"])
        optimistic = discover(model, test, work / f"maps_{name}_test_matched", "clusters", with_masks=True, max_pictures=0)
        results[name] = {**{k: m[k] for k in keys}, "matched_on_test": {k: optimistic[k] for k in keys}}
    if args.kmeans_clusters:
        model = load_run_model(runs["ld"], device)
        for kind in ("position", "intensity+position", "ld embedding", "ld embedding+position"):
            r = kmeans_clusters(kind, model, train, test, args.kmeans_clusters)
            results[f"k-means on {kind}"] = {**{k: r[k] for k in keys}, "matched_on_test": {k: r["matched_on_test"][k] for k in keys},
                                             "num_clusters_chosen_on_train": r["num_clusters_chosen_on_train"]}
            print(f"k-means on {kind}: N={r['num_clusters_chosen_on_train']}, mean Dice {r['mean_dice']:.3f}", flush=True)

    out = work if args.quick else Path(args.results)
    out.mkdir(parents=True, exist_ok=True)
    prov = provenance(device, None if argv is None else ["benchmarks/cluster_cxr.py", *argv])
    result = {**prov, "wall_s": round(time.time() - t0, 1), "quick": args.quick,
              "runs": {k: str(v) for k, v in runs.items()}, "num_test_images": len(test), "results": results}
    (out / "cluster_cxr.json").write_text(json.dumps(result, indent=2))
    structures = list(results["ld"]["dice"])
    lines = ["# Unsupervised CXR clustering, Hungarian-matched Dice (test split)", "", *(f"- {line}" for line in provenance_markdown(prov, result["wall_s"])),
             f"- {len(test)} test images; K={args.num_clusters}; one cluster per structure, matched on the {len(train)} training "
             "images' labels and applied to test (first rows), or matched on the test images themselves (optimistic)",
             f"- k-means rows: fitted on training pixels at the model's size; N (from {args.kmeans_clusters}) and the matching chosen on the training images; "
             "`position` = each pixel's (row, col) in [-1, 1], `intensity+position` adds its z-scored grey value (half weight), `ld embedding` = LD's v (unit vectors), `+position` beside it",
             "", "| model | matching | " + " | ".join(structures) + " | mean |", "|---|---|" + "---|" * (len(structures) + 1)]
    for name, r in results.items():
        for label, e in (("on train, applied to test", r), ("on test (optimistic)", r["matched_on_test"])):
            if "num_clusters_chosen_on_train" in r:
                name_n = f"{name} (N={r['num_clusters_chosen_on_train']})"
            else:
                name_n = name
            lines.append(f"| {name_n} | {label} | " + " | ".join(f"{e['dice'][s]:.3f} ± {e['dice_std'][s]:.3f}" for s in structures) + f" | {e['mean_dice']:.3f} |")
    lines += ["", f"Cluster maps and overlays: {work}/maps_*/overlays/"]
    (out / "cluster_cxr.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
