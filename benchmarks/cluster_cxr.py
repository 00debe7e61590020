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
4. What a user gets without localdisc, and LD's features without its head: k-means on each
   pixel's (row, col) position alone, on (intensity, row, col), on the LD embedding v, and on
   LD's deepest encoder level beside intensity and position (localdisc.tasks.pixel_features),
   with the number of clusters N chosen on the training images (Hungarian-matched Dice there)
   from --kmeans-clusters, fitted on training pixels, then applied and matched on train as
   above. The deep-feature row is compared, per test image and seed, with intensity+position
   and with the same features from the network re-initialized (what pretraining adds).

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

from localdisc.runtime.provenance import provenance, provenance_markdown

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


def untrained_copy(model, seed: int):
    """The same network, re-initialized with ``seed``: the control that tells what pretraining
    adds to features any convolutional network of this shape computes."""
    import copy

    model = copy.deepcopy(model)
    torch.manual_seed(seed)
    for module in model.method.modules():
        if hasattr(module, "reset_parameters"):
            module.reset_parameters()
        if hasattr(module, "reset_running_stats"):
            module.reset_running_stats()
    return model


def kmeans_clusters(parts: str, model, train, test, choices, seed: int = 0) -> dict:
    """k-means on the pixel features ``parts`` (see localdisc.tasks.pixel_features) with N in
    ``choices``, fitted on training pixels; N and the cluster-to-structure matching chosen on the
    training images, then applied to test (see the module docstring)."""
    from localdisc.data.records import load_sample_image, load_sample_mask
    from localdisc.tasks.hungarian import ClusterMatcher, one_hot_structures
    from localdisc.tasks.pixel_features import PixelKMeans

    def featurize(km, samples):
        return [(km.features(image := load_sample_image(s, model.channels)), image.shape[1:], s) for s in samples]

    def score(km, data, mapping=None):
        matcher = None
        for f, shape, s in data:
            lab = km.assign(f, shape)
            mask = load_sample_mask(s)
            names = list(s.extra.get("class_names") or [])[1:] or [f"class{c}" for c in range(1, int(mask.max()) + 1)]
            matcher = matcher or ClusterMatcher(km.num_clusters, names)
            matcher.update(lab, one_hot_structures(mask, range(1, len(names) + 1)))
        return matcher.compute(mapping)

    candidates = [PixelKMeans(parts, N, model.size, model.method, seed=seed) for N in choices]
    tr, te = featurize(candidates[0], train), featurize(candidates[0], test)  # the features do not depend on N
    best = None
    for km in candidates:
        on_train = score(km.fit([f for f, _, _ in tr]), tr)
        if best is None or on_train["mean_dice"] > best[1]["mean_dice"]:
            best = (km, on_train, km.num_clusters)
    km, on_train, N = best
    result = score(km, te, on_train["mapping"])
    result["matched_on_test"] = score(km, te)
    result["num_clusters_chosen_on_train"] = N
    result["mean_dice_on_train"] = on_train["mean_dice"]
    return result


# (row name, features from: None / "ld" / "untrained", pixel feature parts)
KMEANS_ROWS = [
    ("k-means on position", None, "position"),
    ("k-means on intensity+position", None, "intensity+position"),
    ("k-means on ld embedding", "ld", "embedding"),
    ("k-means on ld embedding+position", "ld", "embedding+position"),
    ("k-means on ld deep+intensity+position", "ld", "deep+intensity+position"),
    ("k-means on untrained deep+intensity+position", "untrained", "deep+intensity+position"),
]
COMPARISONS = [("k-means on ld deep+intensity+position", "k-means on intensity+position"),
               ("k-means on ld deep+intensity+position", "k-means on untrained deep+intensity+position")]
SEEDED_ROWS = {name for pair in COMPARISONS for name in pair}


def seed_mean(rows: list[dict], keys) -> dict:
    """One table row from k-means results of several seeds: per-structure Dice averaged over
    seeds and images, std over images of the seed-averaged Dice; N of each seed."""
    import numpy as np

    def merge(rs):
        per_image = np.mean([r["per_image"] for r in rs], axis=0)  # (images, structures)
        names = list(rs[0]["dice"])
        return {**{k: rs[0][k] for k in keys}, "dice": {n: float(per_image[:, c].mean()) for c, n in enumerate(names)},
                "dice_std": {n: float(per_image[:, c].std()) for c, n in enumerate(names)}, "mean_dice": float(per_image.mean())}

    ns = [r["num_clusters_chosen_on_train"] for r in rows]
    return {**merge(rows), "matched_on_test": merge([r["matched_on_test"] for r in rows]), "seeds": len(rows),
            "num_clusters_chosen_on_train": ns[0] if len(set(ns)) == 1 else "/".join(map(str, ns)),
            "mean_dice_on_train": float(np.mean([r["mean_dice_on_train"] for r in rows]))}


def compare(a: list[dict], b: list[dict]) -> dict:
    """Paired difference a - b of each test image's mean matched Dice, seed by seed."""
    import numpy as np

    from localdisc.tasks.stats import cluster_bootstrap_ci, paired_test

    per = lambda rows: np.array([np.mean(r["per_image"], axis=1) for r in rows]).T  # noqa: E731  (images, seeds)
    da, db = per(a), per(b)
    n = min(da.shape[1], db.shape[1])
    diffs = da[:, :n] - db[:, :n]
    test = paired_test(da[:, :n].mean(1), db[:, :n].mean(1))
    return {"mean": float(diffs.mean()), "ci": list(cluster_bootstrap_ci(diffs)), "p": test.p_value, "test": test.test, "images": int(diffs.shape[0]), "seeds": n}


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
    p.add_argument("--kmeans-seeds", type=int, default=3, help="k-means seeds (and untrained-network seeds) for the compared rows")
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
    comparisons = {}
    if args.kmeans_clusters:
        model = load_run_model(runs["ld"], device)
        per_seed = {}
        for name, source, parts in KMEANS_ROWS:
            seeds = range(args.kmeans_seeds) if name in SEEDED_ROWS else range(1)
            rows = [kmeans_clusters(parts, untrained_copy(model, seed) if source == "untrained" else model, train, test, args.kmeans_clusters, seed) for seed in seeds]
            per_seed[name] = rows
            results[name] = seed_mean(rows, keys)
            print(f"{name}: N={results[name]['num_clusters_chosen_on_train']}, mean Dice {results[name]['mean_dice']:.3f} over {len(rows)} seed(s)", flush=True)
        for a, b in COMPARISONS:
            comparisons[f"{a} - {b}"] = compare(per_seed[a], per_seed[b])

    out = work if args.quick else Path(args.results)
    out.mkdir(parents=True, exist_ok=True)
    prov = provenance(device, None if argv is None else ["benchmarks/cluster_cxr.py", *argv])
    result = {**prov, "wall_s": round(time.time() - t0, 1), "quick": args.quick,
              "runs": {k: str(v) for k, v in runs.items()}, "num_test_images": len(test), "results": results, "comparisons": comparisons}
    (out / "cluster_cxr.json").write_text(json.dumps(result, indent=2))
    structures = list(results["ld"]["dice"])
    lines = ["# Unsupervised CXR clustering, Hungarian-matched Dice (test split)", "", *(f"- {line}" for line in provenance_markdown(prov, result["wall_s"])),
             f"- {len(test)} test images; K={args.num_clusters}; one cluster per structure, matched on the {len(train)} training "
             "images' labels and applied to test (first rows), or matched on the test images themselves (optimistic)",
             f"- k-means rows: fitted on training pixels at the model's size; N (from {args.kmeans_clusters}) and the matching chosen on the training images; "
             "`position` = each pixel's (row, col) in [-1, 1], `intensity` its z-scored grey value (half weight), `embedding` = LD's v (unit vectors), "
             "`deep` = the deepest encoder level (unit vectors, upsampled), `untrained` = the same network re-initialized (seed = k-means seed); "
             f"rows marked with seeds average {args.kmeans_seeds} k-means seeds (N: the choice of each seed)",
             "", "| model | matching | " + " | ".join(structures) + " | mean |", "|---|---|" + "---|" * (len(structures) + 1)]
    for name, r in results.items():
        for label, e in (("on train, applied to test", r), ("on test (optimistic)", r["matched_on_test"])):
            if "num_clusters_chosen_on_train" in r:
                name_n = f"{name} (N={r['num_clusters_chosen_on_train']}" + (f", {r['seeds']} seeds)" if r["seeds"] > 1 else ")")
            else:
                name_n = name
            lines.append(f"| {name_n} | {label} | " + " | ".join(f"{e['dice'][s]:.3f} ± {e['dice_std'][s]:.3f}" for s in structures) + f" | {e['mean_dice']:.3f} |")
    if comparisons:
        lines += ["", "Paired differences of the per-image mean matched Dice (test images x k-means seeds; 95% two-way bootstrap CI over images and seeds; "
                  "Wilcoxon on the seed-averaged per-image values):", "", "| comparison | mean difference [95% CI] | p |", "|---|---|---|"]
        lines += [f"| {k} | {c['mean']:+.3f} [{c['ci'][0]:+.3f}, {c['ci'][1]:+.3f}] | {c['p']:.1g} |" for k, c in comparisons.items()]
    lines += ["", f"Cluster maps and overlays: {work}/maps_*/overlays/"]
    (out / "cluster_cxr.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
