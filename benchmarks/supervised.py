"""Supervised baseline: random-init U-Net on ALL training labels, scored on the fixed test splits.

Datasets (from ``--data-root``, default ../shared/data, see its README):
- PH2 dermoscopy, skin lesion (binary), 140 train / 60 test (split.csv);
- CXR chest X-ray, left lung / right lung / cardiomediastinum, 66 train / 32 test by patient
  (horizontal flips swap the lung labels).

Per dataset: validation carved from train (20%, fixed split seed), a wall-clock budget of
``--minutes`` (the step count is sized from a timed step of the network, ``--max-minutes``
caps the loop), model selection on validation Dice, then evaluation at each test image's
original resolution (Dice, IoU, HD95 in pixels). Writes ``benchmarks/results/supervised.json``
and ``.md`` (``supervised_quick.*`` with ``--quick``) with the command, git commit, machine,
per-class Dice/HD95 mean +- std and wall time.

    python benchmarks/supervised.py                      # 30 min per dataset
    python benchmarks/supervised.py --minutes 10 --device cuda
    python benchmarks/supervised.py --quick              # smoke test: tiny net, 4 steps, 4 test images
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import replace
from pathlib import Path

from localdisc.data.datasets import num_channels_of
from localdisc.report.tables import mean_std
from localdisc.runtime.provenance import provenance, write_result
from localdisc.tasks.bench_runs import class_scores, finetune_and_evaluate
from localdisc.tasks.step_timing import seconds_per_step, steps_in_budget
from localdisc.train.finetune import FinetuneConfig, finetune_samples
from localdisc.utils import pick_device

ROOT = Path(__file__).resolve().parents[1]
DATASETS = {"ph2": dict(spec="ph2:{root}/PH2", image_size=(256, 256), patch_size=()), "cxr": dict(spec="cxr:{root}/CXR", image_size=(256, 256), patch_size=())}


def run_dataset(name: str, args, out_dir: Path) -> dict:
    """Size the steps to the budget from a timed step, fine-tune on all training labels, score on test."""
    d = DATASETS[name]
    spec = d["spec"].format(root=args.data_root)
    cfg = FinetuneConfig(data=spec, out=str(out_dir / name), seed=args.seed, split_seed=0, labels=0, val_fraction=0.2, steps=1, batch_size=args.batch_size,
                         image_size=tuple(args.image_size or d["image_size"]), patch_size=d["patch_size"], lr=1e-3, eval_every=100, checkpoint_every=200,
                         log_every=20, device=args.device, overwrite=True)
    if args.quick:
        cfg = replace(cfg, labels=6, val_fraction=2, image_size=(64, 64), batch_size=2, eval_every=2, encoder_channels=(8, 16, 16), decoder_channels=(16, 8))
    train = finetune_samples(cfg)["train"]
    channels = int(train[0].extra.get("channels") or 0) or num_channels_of(train)
    classes = max(2, len(train[0].extra.get("class_names") or ()))
    steps = 4 if args.quick else steps_in_budget(args.minutes, seconds_per_step(cfg, channels, classes, args.device))
    print(f"[{name}] {steps} steps in {args.minutes} min")
    cfg = replace(cfg, steps=steps, max_minutes=0 if args.quick else args.minutes, eval_every=cfg.eval_every if args.quick else max(50, steps // 20))
    done = finetune_and_evaluate(cfg, max_overlays=8, max_images=4 if args.quick else 0)
    info, summary = json.loads((done["run"] / "model.json").read_text()), done["summary"]
    return {"data": spec, "run": done["run"], "train_images": info["n_train"], "val_images": info["n_val"], "test_images": summary["n_images"],
            "steps_planned": steps, "steps_done": info["steps_done"], "best_step": info["best_step"], "best_val_dice": info["best_val_dice"],
            "image_size": list(cfg.image_size), "batch_size": cfg.batch_size, "train_wall_s": done["train_s"], "total_wall_s": done["total_s"],
            "classes": class_scores(summary, ("dice", "iou", "hd95")), "eval": summary["out"]}


def markdown(result: dict, quick: bool) -> list[str]:
    cell = lambda e, digits=3: mean_std(e["mean"], e["std"], digits).replace("±", "+-")  # noqa: E731
    lines = [f"# Supervised baseline (random init, all training labels){' - QUICK smoke run, numbers meaningless' if quick else ''}", "",
             "| dataset | class | Dice | HD95 (px) | train/val/test images | steps | wall time |", "|---|---|---|---|---|---|---|"]
    for name, r in result["datasets"].items():
        lines += [f"| {name} | {c} | {cell(s['dice'])} | {cell(s['hd95'], 1)} | {r['train_images']}/{r['val_images']}/{r['test_images']} "
                  f"| {r['steps_done']} | {r['total_wall_s'] / 60:.1f} min |" for c, s in r["classes"].items()]
    return lines + ["", "Dice: foreground classes, per test image at original resolution, mean +- std. HD95 undefined (empty masks) are left out "
                    "of its mean. Validation (20% of train, fixed split seed) selects the checkpoint; the test split is never used for selection."]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--minutes", type=float, default=30.0, help="training budget per dataset")
    p.add_argument("--quick", action="store_true", help="smoke test: tiny network, 4 steps, 4 test images")
    p.add_argument("--datasets", default="ph2,cxr", help="comma-separated: ph2, cxr")
    p.add_argument("--data-root", default=str(ROOT.parent / "shared" / "data"), help="folder holding PH2/ and CXR/")
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--image-size", type=int, nargs=2, default=None, metavar=("H", "W"),
                   help="training resolution (default 256 256); smaller trades boundary detail for more steps in the budget")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="auto")
    p.add_argument("--work", default=str(ROOT / "benchmarks" / "_work" / "supervised"), help="run folders (not committed)")
    p.add_argument("--results", default=str(ROOT / "benchmarks" / "results"))
    p.add_argument("--stem", default="", help="result file name (default: supervised, or supervised_quick); e.g. supervised_ph2 when datasets run in parallel processes")
    args = p.parse_args(argv)
    names = [n.strip() for n in args.datasets.split(",") if n.strip()]
    bad = [n for n in names if n not in DATASETS]
    if bad:
        p.error(f"unknown dataset(s) {bad}; valid: {', '.join(DATASETS)}")
    prov = provenance(str(pick_device(args.device)), ["benchmarks/supervised.py", *(sys.argv[1:] if argv is None else argv)])
    result = {"quick": args.quick, "minutes_per_dataset": args.minutes, "datasets": {}}
    t0 = time.time()
    for name in names:
        print(f"[{name}] training ...")
        result["datasets"][name] = run_dataset(name, args, Path(args.work))
        print(json.dumps(result["datasets"][name]["classes"], indent=1))
    json_path, md = write_result(args.results, args.stem or ("supervised_quick" if args.quick else "supervised"), result, markdown(result, args.quick),
                                 prov=prov, wall_s=time.time() - t0)
    print(md.read_text())
    print(f"wrote {json_path} and {md.name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
