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
             "", "| model | matching | " + " | ".join(structures) + " | mean |", "|---|---|" + "---|" * (len(structures) + 1)]
    for name, r in results.items():
        for label, e in (("on train, applied to test", r), ("on test (optimistic)", r["matched_on_test"])):
            lines.append(f"| {name} | {label} | " + " | ".join(f"{e['dice'][s]:.3f} ± {e['dice_std'][s]:.3f}" for s in structures) + f" | {e['mean_dice']:.3f} |")
    lines += ["", f"Cluster maps and overlays: {work}/maps_*/overlays/"]
    (out / "cluster_cxr.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
