"""Thin vessels need their pixels: native-resolution patch training against resize-to-256.

On the synthetic fundus at DRIVE's size (584x565), random-init U-Nets are fine-tuned with the
same step budget and batch size in two ways, and scored at the original resolution:

- ``resize-256``: every image resized to 256x256 (the old fixed default), whole images;
- ``native-patches``: the data's own size (localdisc's default when --image-size is not given:
  576x560 after rounding to the U-Net's stride), 128x128 foreground-biased patches, prediction
  by a Gaussian-weighted sliding window.

Writes ``benchmarks/results/resolution_fundus.{json,md}`` with vessel Dice, AUC inside the field
of view, wall times, the command, commit and machine. Selection: the best validation Dice
checkpoint (validation carved from the training images); test images are never used for it.

    python benchmarks/resolution.py                 # 400 steps, seeds 0 1
    python benchmarks/resolution.py --quick         # smoke test
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from localdisc.runtime.provenance import provenance, write_result
from localdisc.tasks.bench_runs import finetune_and_evaluate
from localdisc.train.finetune import FinetuneConfig
from localdisc.utils import pick_device

ROOT = Path(__file__).resolve().parents[1]
ARMS = {"resize-256": dict(image_size=(256, 256), patch_size=()), "native-patches": dict(image_size=(), patch_size=(128, 128))}


def run_arm(name: str, seed: int, args) -> dict:
    """Fine-tune one arm from random init and score it on the test split (the row of the tables)."""
    cfg = FinetuneConfig(data=args.data, out=str(Path(args.work) / f"{name}-s{seed}"), seed=seed, steps=args.steps, batch_size=args.batch_size, **ARMS[name],
                         patch_foreground=0.5, lr=1e-3, eval_every=max(1, args.steps // 8), checkpoint_every=args.steps, log_every=max(1, args.steps // 20),
                         device=args.device, overwrite=True, **(dict(encoder_channels=(8, 16, 16), decoder_channels=(16, 8)) if args.quick else {}))
    done = finetune_and_evaluate(cfg, max_overlays=2, save_predictions=False)
    info, m = json.loads((done["run"] / "model.json").read_text()), done["summary"]["metrics"]
    return {"arm": name, "seed": seed, "image_size": info["image_size"], "patch_size": info["patch_size"], "steps": info["steps_done"], "best_step": info["best_step"],
            "dice": m["dice_vessel"]["mean"], "dice_std": m["dice_vessel"]["std"], "auc": m["auc"]["mean"], "n_test": done["summary"]["n_images"],
            "train_s": done["train_s"], "total_s": done["total_s"], "run": str(done["run"])}


def markdown(rows: list[dict], means: dict, args) -> list[str]:
    lines = ["# Native-resolution patches vs resize-to-256 (synthetic fundus, 584x565)",
             f"- data `{args.data}`; {args.steps} steps of batch {args.batch_size} for every arm; random init; "
             "checkpoint chosen on validation Dice; scored per test image at the original 584x565", "",
             "| arm | training size | patches | seed | vessel Dice | AUC (FOV) | train time |", "|---|---|---|---|---|---|---|"]
    lines += [f"| {r['arm']} | {'x'.join(map(str, r['image_size']))} | {'x'.join(map(str, r['patch_size'])) or 'whole image'} | {r['seed']} "
              f"| {r['dice']:.3f} ± {r['dice_std']:.3f} | {r['auc']:.3f} | {r['train_s'] / 60:.1f} min |" for r in rows]
    return lines + ["", "| arm | mean vessel Dice over seeds | mean AUC |", "|---|---|---|", *(f"| {a} | {v['dice']:.3f} | {v['auc']:.3f} |" for a, v in means.items())]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", default="synthetic-fundus:40:584x565", help="data spec (default: 40 synthetic fundus images at DRIVE's size)")
    p.add_argument("--steps", type=int, default=400)
    p.add_argument("--batch-size", type=int, default=4)
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    p.add_argument("--device", default="auto")
    p.add_argument("--quick", action="store_true", help="smoke test: 6 images at 96x88, 4 steps, a tiny network")
    p.add_argument("--work", default=str(ROOT / "benchmarks" / "_work" / "resolution"))
    p.add_argument("--results", default=str(ROOT / "benchmarks" / "results"))
    args = p.parse_args(argv)
    if args.quick:
        args.data, args.steps, args.seeds = "synthetic-fundus:6:96x88", 4, [0]
        ARMS["resize-256"]["image_size"], ARMS["native-patches"]["patch_size"] = (32, 32), (32, 32)
    prov = provenance(str(pick_device(args.device)), ["benchmarks/resolution.py", *(sys.argv[1:] if argv is None else argv)])
    t0 = time.time()
    rows = []
    for seed in args.seeds:
        for arm in ARMS:
            rows.append(run_arm(arm, seed, args))
            print(json.dumps(rows[-1]), flush=True)
            means = {a: {k: sum(r[k] for r in rows if r["arm"] == a) / sum(r["arm"] == a for r in rows) for k in ("dice", "auc")} for a in ARMS if any(r["arm"] == a for r in rows)}
            payload = {"data": args.data, "steps": args.steps, "batch_size": args.batch_size, "rows": rows, "means": means}
            _, md = write_result(args.results, "resolution_fundus_quick" if args.quick else "resolution_fundus", payload, markdown(rows, means, args),
                                 prov=prov, wall_s=time.time() - t0)  # written as results arrive
    print(md.read_text())
    return 0


if __name__ == "__main__":
    sys.exit(main())
