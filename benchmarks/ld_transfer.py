"""Does LD pretraining help with few labels? LD-initialized vs random-init fine-tuning.

Per dataset: LD is pretrained WITHOUT labels on the dataset's TRAIN images (stage 1 + 2,
``--stage both``), then a U-Net is fine-tuned with a label budget of L training images x
seeds, once from the LD encoder and once from random init, with the IDENTICAL fine-tuning
config (steps, size, augmentation, validation carved from train). Scores: Dice per class on
the held-out TEST split (``tasks.evaluate``, original resolution), mean +- std over seeds.
Also checks that LD pretraining runs on the real unlabeled fundus photograph
``skimage.data.retina()``.

    python benchmarks/ld_transfer.py                      # CXR 1/2/5 and PH2 2/5/10 labels x 3 seeds
    python benchmarks/ld_transfer.py --quick              # smoke test: tiny sizes, steps, one seed
Writes benchmarks/results/ld_transfer.{json,md} (--quick: ld_transfer_quick.*), runs under --work.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

from localdisc.methods.ld import LDConfig
from localdisc.runtime.provenance import write_result
from localdisc.tasks.bench_runs import class_scores, finetune_and_evaluate, mean_sd_by_class, pretrain_once, retina_check
from localdisc.train.finetune import FinetuneConfig
from localdisc.train.pretrain import PretrainConfig
from localdisc.utils import pick_device

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data"


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--datasets", nargs="*", default=["cxr", "ph2"], help="cxr and/or ph2 (from --shared)")
    p.add_argument("--shared", default=str(SHARED), help="folder holding CXR/ and PH2/")
    p.add_argument("--cxr-labels", nargs="*", type=int, default=[1, 2, 5])
    p.add_argument("--ph2-labels", nargs="*", type=int, default=[2, 5, 10])
    p.add_argument("--seeds", nargs="*", type=int, default=[0, 1, 2])
    p.add_argument("--image-size", nargs="*", type=int, default=[256, 256])
    p.add_argument("--encoder-channels", nargs="*", type=int, default=[16, 32, 64, 128, 128])
    p.add_argument("--decoder-channels", nargs="*", type=int, default=[128, 64, 32, 32])
    p.add_argument("--grid", type=int, default=8)
    p.add_argument("--pretrain-steps", type=int, default=2000)
    p.add_argument("--stage1-steps", type=int, default=0, help="0 = a fifth of --pretrain-steps")
    p.add_argument("--pretrain-batch", type=int, default=4, help="images per step (even: pairs x1, x2)")
    p.add_argument("--max-pretrain-images", type=int, default=0)
    p.add_argument("--finetune-steps", type=int, default=1000)
    p.add_argument("--finetune-batch", type=int, default=4)
    p.add_argument("--retina-steps", type=int, default=6)
    p.add_argument("--device", default="auto")
    p.add_argument("--threads", type=int, default=0, help="torch CPU threads (0 = torch default)")
    p.add_argument("--work", default=str(ROOT / "runs" / "bench_ld_transfer"), help="folder for the runs")
    p.add_argument("--out", default=str(ROOT / "benchmarks" / "results"))
    p.add_argument("--quick", action="store_true", help="smoke test: 64^2, tiny widths, few steps, one budget and seed per dataset")
    args = p.parse_args(argv)
    if args.quick:
        args.image_size, args.encoder_channels, args.decoder_channels, args.grid = [64, 64], [8, 16, 16], [16, 8], 4
        args.pretrain_steps, args.stage1_steps, args.finetune_steps, args.max_pretrain_images, args.retina_steps = 4, 2, 4, 8, 2
        args.cxr_labels, args.ph2_labels, args.seeds = args.cxr_labels[:1], args.ph2_labels[:1], args.seeds[:1]
        args.work = str(Path(args.work).with_name(Path(args.work).name + "_quick"))
    if args.threads:
        torch.set_num_threads(args.threads)
    work, device = Path(args.work), str(pick_device(args.device))
    t0 = time.time()
    network = dict(image_size=tuple(args.image_size), encoder_channels=tuple(args.encoder_channels), decoder_channels=tuple(args.decoder_channels), device=args.device)
    result = {"options": vars(args), "datasets": {}, "retina": retina_check(work, args.retina_steps, grid=args.grid, **network)}
    for name in args.datasets:
        folder = Path(args.shared) / {"cxr": "CXR", "ph2": "PH2"}[name]
        if not folder.is_dir():
            result["datasets"][name] = {"skipped": f"{folder} not found"}
            continue
        data, t_pre = f"{name}:{folder}", time.time()
        pre = PretrainConfig(data=data, out=str(work / name / "ld_pretrain"), split="train", seed=0, steps=args.pretrain_steps, batch_size=args.pretrain_batch,
                             max_images=args.max_pretrain_images, lr_halve_every=max(1, args.pretrain_steps // 2), picture_every=0,
                             log_every=max(1, args.pretrain_steps // 20), overwrite=True, **network)
        ld_run = pretrain_once(pre, LDConfig(stage="both", stage1_steps=args.stage1_steps or max(1, args.pretrain_steps // 5), grid=args.grid))
        t_pre = time.time() - t_pre
        budgets, rows = args.cxr_labels if name == "cxr" else args.ph2_labels, []
        for labels in budgets:
            for init_name, init in (("random", ""), ("ld", str(ld_run))):
                for seed in args.seeds:
                    cfg = FinetuneConfig(data=data, out=str(work / name / f"ft_{init_name}_L{labels}_s{seed}"), seed=seed, labels=labels, steps=args.finetune_steps, init=init,
                                         eval_every=max(1, args.finetune_steps // 5), batch_size=args.finetune_batch, overwrite=True, log_every=max(1, args.finetune_steps // 10), **network)
                    done = finetune_and_evaluate(cfg, overlays=False, save_predictions=False)
                    rows.append({"labels": labels, "init": init_name, "seed": seed, "dice": {c: v["dice"]["mean"] for c, v in class_scores(done["summary"]).items()},
                                 "wall_s": done["total_s"]})
                    print(json.dumps({"dataset": name, **rows[-1]}), flush=True)
        summary = {f"{i}@{n}": mean_sd_by_class([r["dice"] for r in rows if r["labels"] == n and r["init"] == i]) for n in budgets for i in ("random", "ld")}
        result["datasets"][name] = {"data": data, "pretrain_run": ld_run, "pretrain_wall_s": t_pre, "runs": rows, "summary": summary}

    lines = ["# LD pretraining -> fine-tuning with few labels",
             f"- image size {args.image_size}, pretrain {args.pretrain_steps} steps (stage 1: {args.stage1_steps or args.pretrain_steps // 5}) on TRAIN images without labels; "
             f"fine-tune {args.finetune_steps} steps, identical for both inits; seeds {args.seeds}; test split Dice (mean +- std over seeds)", ""]
    for name, res in result["datasets"].items():
        if "skipped" in res:
            lines += [f"## {name}: skipped ({res['skipped']})", ""]
            continue
        classes = list(next(iter(res["summary"].values())))
        lines += [f"## {name} (`{res['data']}`), pretraining {res['pretrain_wall_s']:.0f} s", "", "| labels | init | " + " | ".join(classes) + " |", "|---|---|" + "---|" * len(classes)]
        for key, per in res["summary"].items():
            init_name, labels = key.split("@")
            lines.append(f"| {labels} | {init_name} | " + " | ".join(f"{per[c]['mean']:.3f} +- {per[c]['std']:.3f}" for c in classes) + " |")
        lines.append("")
    r = result["retina"]
    lines += ["## skimage.data.retina() (real unlabeled fundus photograph)", "", f"LD pretraining, {r['steps']} steps, {r['wall_s']:.1f} s; last metrics row: `{r['last_row']}` (columns `{r['metrics_header']}`)"]
    _, md = write_result(args.out, "ld_transfer_quick" if args.quick else "ld_transfer", result, lines, device=device, wall_s=time.time() - t0,
                         argv=None if argv is None else ["benchmarks/ld_transfer.py", *argv])
    print(md.read_text())
    return 0


if __name__ == "__main__":
    sys.exit(main())
