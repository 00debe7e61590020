"""Plain LD clustering of chest X-rays, scored by Hungarian-matched Dice (no labels in training).

1. Pretrain LD (stage 1, then 2 with the clustering head, K=--num-clusters) on the CXR TRAIN images (or --run).
2. Cluster maps (argmax over K) of the TEST images at original resolution; the clusters are
   matched to left lung, right lung and cardiomediastinum (Hungarian on Dice, one cluster per
   structure) and Dice is reported per structure (mean over images, and pooled). Two matchings:
   chosen on the TRAIN images' labels and applied to test (what a user who labels a few images
   to name the clusters gets), and chosen on the test images themselves (optimistic). Class
   maps follow the cxr layout (the cardiomediastinum wins where outlines overlap).
3. Reference point: "random clusters" (an untrained LD model of the same architecture), matched alike.
4. k-means on pixel features (localdisc.tasks.pixel_features: position, intensity+position, the
   LD embedding v, LD's deepest encoder level), N chosen on the training images from
   --kmeans-clusters; the deep-feature row is compared, per test image and seed, with
   intensity+position and with the same features of the re-initialized network.

    python benchmarks/cluster_cxr.py [--run RUN] [--quick]

Writes benchmarks/results/cluster_cxr.{json,md} and example overlays under --work.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import time
from pathlib import Path

from localdisc.data.sources import resolve_source
from localdisc.evaluation.stats import paired_difference
from localdisc.methods.ld import LDConfig
from localdisc.runtime.provenance import write_result
from localdisc.tasks.bench_runs import add_pretrain_args, apply_quick, pretrain_config, pretrain_once, use_cpus
from localdisc.tasks.discover import discover, load_run_model
from localdisc.tasks.pixel_features import average_seeds, kmeans_chosen_on_train, per_image_mean_dice, reinitialized
from localdisc.utils import pick_device

# row "k-means on [ld |untrained ]PARTS": pixel features PARTS of the LD run / of the re-initialized network
KMEANS_ROWS = ["position", "intensity+position", "ld embedding", "ld embedding+position", "ld deep+intensity+position", "untrained deep+intensity+position"]
COMPARISONS = [("k-means on ld deep+intensity+position", "k-means on intensity+position"),
               ("k-means on ld deep+intensity+position", "k-means on untrained deep+intensity+position")]
SEEDED = {name for pair in COMPARISONS for name in pair}
KEYS = ("mapping", "dice", "dice_std", "dice_pooled", "mean_dice", "num_clusters")


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
        apply_quick(args, max_images=8, max_test=4, num_clusters=8)
    use_cpus()
    t0 = time.time()
    work, device = Path(args.work), str(pick_device(args.device))

    def train_ld(out: Path, steps: int) -> Path:  # steps 1 at lr 0: the untrained reference, a run folder of stage 2 only
        cfg = pretrain_config(args, args.data, out, steps, in_channels=1, max_images=args.max_images, lr=args.lr if steps > 1 else 0.0)
        return pretrain_once(cfg, LDConfig(stage="both" if steps > 1 else "2", grid=args.grid, num_clusters=args.num_clusters))

    runs = {"ld": Path(args.run) if args.run else train_ld(work / "ld", args.pretrain_steps), "untrained": train_ld(work / "untrained", 1)}
    samples = resolve_source(args.data)
    test, train = [s for s in samples if s.split == "test"], [s for s in samples if s.split != "test"]
    if args.max_test:
        test, train = test[: args.max_test], train[: args.max_test]
    results, comparisons = {}, {}
    for name, run in runs.items():
        model = load_run_model(run, device)
        on_train = discover(model, train, work / f"maps_{name}_train", "clusters", with_masks=True, max_pictures=0)
        m = discover(model, test, work / f"maps_{name}", "clusters", with_masks=True, max_pictures=8, mapping=on_train["mapping"])
        optimistic = discover(model, test, work / f"maps_{name}_test_matched", "clusters", with_masks=True, max_pictures=0)
        results[name] = {**{k: m[k] for k in KEYS}, "matched_on_test": {k: optimistic[k] for k in KEYS}}
    if args.kmeans_clusters:
        model, per_seed = load_run_model(runs["ld"], device), {}
        for row in KMEANS_ROWS:
            name, parts = f"k-means on {row}", row.split()[-1]
            features = lambda seed: dataclasses.replace(model, method=reinitialized(model.method, seed)) if row.startswith("untrained") else model  # noqa: E731
            per_seed[name] = [kmeans_chosen_on_train(parts, features(seed), train, test, args.kmeans_clusters, seed) for seed in range(args.kmeans_seeds if name in SEEDED else 1)]
            results[name] = average_seeds(per_seed[name], KEYS)
            print(f"{name}: N={results[name]['num_clusters_chosen_on_train']}, mean Dice {results[name]['mean_dice']:.3f}", flush=True)
        comparisons = {f"{a} - {b}": paired_difference(per_image_mean_dice(per_seed[a]), per_image_mean_dice(per_seed[b])) for a, b in COMPARISONS}

    structures = list(results["ld"]["dice"])
    lines = ["# Unsupervised CXR clustering, Hungarian-matched Dice (test split)",
             f"- {len(test)} test images; K={args.num_clusters}; one cluster per structure, matched on the {len(train)} training "
             "images' labels and applied to test (first rows), or matched on the test images themselves (optimistic)",
             f"- k-means rows: fitted on training pixels at the model's size; N (from {args.kmeans_clusters}) and the matching chosen on the training images; "
             "`position` = each pixel's (row, col) in [-1, 1], `intensity` its z-scored grey value (half weight), `embedding` = LD's v (unit vectors), "
             "`deep` = the deepest encoder level (unit vectors, upsampled), `untrained` = the same network re-initialized (seed = k-means seed); "
             f"rows marked with seeds average {args.kmeans_seeds} k-means seeds (N: the choice of each seed)",
             "", "| model | matching | " + " | ".join(structures) + " | mean |", "|---|---|" + "---|" * (len(structures) + 1)]
    for name, r in results.items():
        n = r.get("num_clusters_chosen_on_train")
        shown = name if n is None else f"{name} (N={n}" + (f", {r['seeds']} seeds)" if r["seeds"] > 1 else ")")
        for label, e in (("on train, applied to test", r), ("on test (optimistic)", r["matched_on_test"])):
            lines.append(f"| {shown} | {label} | " + " | ".join(f"{e['dice'][s]:.3f} ± {e['dice_std'][s]:.3f}" for s in structures) + f" | {e['mean_dice']:.3f} |")
    if comparisons:
        lines += ["", "Paired differences of the per-image mean matched Dice (test images x k-means seeds; 95% two-way bootstrap CI over images and seeds; "
                  "Wilcoxon on the seed-averaged per-image values):", "", "| comparison | mean difference [95% CI] | p |", "|---|---|---|"]
        lines += [f"| {k} | {c['mean_diff']:+.3f} [{c['ci_low']:+.3f}, {c['ci_high']:+.3f}] | {c['p_value']:.1g} |" for k, c in comparisons.items()]
    lines += ["", f"Cluster maps and overlays: {work}/maps_*/overlays/"]
    payload = {"quick": args.quick, "runs": runs, "num_test_images": len(test), "results": results, "comparisons": comparisons}
    _, md = write_result(work if args.quick else Path(args.results), "cluster_cxr", payload, lines, device=device,
                         argv=None if argv is None else ["benchmarks/cluster_cxr.py", *argv], wall_s=time.time() - t0)
    print(md.read_text())
    return 0


if __name__ == "__main__":
    sys.exit(main())
