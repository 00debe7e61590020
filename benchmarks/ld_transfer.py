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
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data"


def pretrain_ld(data: str, out: Path, args) -> tuple[Path, float]:
    from localdisc.methods import get_method
    from localdisc.methods.ld import LDConfig
    from localdisc.train.pretrain import PretrainConfig

    t0 = time.time()
    done = (out / "backbone.safetensors").is_file()
    if not done:
        cfg = PretrainConfig(data=data, out=str(out), split="train", seed=0, steps=args.pretrain_steps, batch_size=args.pretrain_batch, image_size=tuple(args.image_size),
                             encoder_channels=tuple(args.encoder_channels), decoder_channels=tuple(args.decoder_channels), max_images=args.max_pretrain_images,
                             lr_halve_every=max(1, args.pretrain_steps // 2), picture_every=0, log_every=max(1, args.pretrain_steps // 20), overwrite=True, device=args.device)
        get_method("ld").run_schedule(cfg, LDConfig(stage="both", stage1_steps=args.stage1_steps or max(1, args.pretrain_steps // 5), grid=args.grid))
    return out, time.time() - t0


def finetune_and_score(data: str, out: Path, labels: int, seed: int, init: str, args) -> tuple[dict, float]:
    from localdisc.tasks.evaluate import evaluate
    from localdisc.train.finetune import FinetuneConfig, finetune

    t0 = time.time()
    cfg = FinetuneConfig(data=data, out=str(out), seed=seed, labels=labels, steps=args.finetune_steps, image_size=tuple(args.image_size), init=init,
                         encoder_channels=tuple(args.encoder_channels), decoder_channels=tuple(args.decoder_channels), eval_every=max(1, args.finetune_steps // 5),
                         batch_size=args.finetune_batch, overwrite=True, device=args.device, log_every=max(1, args.finetune_steps // 10))
    run = finetune(cfg)
    summary = evaluate(run, split="test", overlays=False, save_predictions=False, device=args.device)
    m = summary["metrics"]
    dice = {name: m[f"dice_{name}"]["mean"] for name in summary["class_names"][1:]}
    return dice, time.time() - t0


def retina_check(work: Path, args) -> dict:
    """Pretrain a few LD steps on the real fundus photograph skimage.data.retina()."""
    from PIL import Image
    from skimage import data as skdata

    folder = work / "retina"
    folder.mkdir(parents=True, exist_ok=True)
    Image.fromarray(skdata.retina()).save(folder / "retina.png")
    from localdisc.methods import get_method
    from localdisc.methods.ld import LDConfig
    from localdisc.train.pretrain import PretrainConfig

    t0 = time.time()
    out = work / "retina_ld"
    cfg = PretrainConfig(data=str(folder), out=str(out), steps=args.retina_steps, batch_size=2, image_size=tuple(args.image_size), encoder_channels=tuple(args.encoder_channels),
                         decoder_channels=tuple(args.decoder_channels), log_every=1, picture_every=0, overwrite=True, device=args.device)
    get_method("ld").run_schedule(cfg, LDConfig(stage="both", stage1_steps=max(1, args.retina_steps // 2), grid=args.grid))
    last = (out / "metrics.csv").read_text().splitlines()
    return {"run": str(out), "steps": args.retina_steps, "wall_s": time.time() - t0, "metrics_header": last[0], "last_row": last[-1], "picture": str(out / "pictures" / "embeddings.png")}


def main() -> int:
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
    args = p.parse_args()
    if args.quick:
        args.image_size, args.encoder_channels, args.decoder_channels, args.grid = [64, 64], [8, 16, 16], [16, 8], 4
        args.pretrain_steps, args.stage1_steps, args.finetune_steps, args.max_pretrain_images, args.retina_steps = 4, 2, 4, 8, 2
        args.cxr_labels, args.ph2_labels, args.seeds = args.cxr_labels[:1], args.ph2_labels[:1], args.seeds[:1]
        args.work = str(Path(args.work).with_name(Path(args.work).name + "_quick"))
    import torch

    if args.threads:
        torch.set_num_threads(args.threads)
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    t_start = time.time()
    from localdisc.runtime.provenance import provenance, provenance_markdown
    from localdisc.utils import pick_device

    prov = provenance(str(pick_device(args.device)))
    result = {**prov, "options": vars(args), "datasets": {}}
    result["retina"] = retina_check(work, args)
    for name in args.datasets:
        folder = {"cxr": "CXR", "ph2": "PH2"}[name]
        data = f"{name}:{Path(args.shared) / folder}"
        if not (Path(args.shared) / folder).is_dir():
            result["datasets"][name] = {"skipped": f"{Path(args.shared) / folder} not found"}
            continue
        ld_run, t_pre = pretrain_ld(data, work / name / "ld_pretrain", args)
        budgets = args.cxr_labels if name == "cxr" else args.ph2_labels
        rows = []
        for labels in budgets:
            for init_name, init in (("random", ""), ("ld", str(ld_run))):
                for seed in args.seeds:
                    dice, wall = finetune_and_score(data, work / name / f"ft_{init_name}_L{labels}_s{seed}", labels, seed, init, args)
                    rows.append({"labels": labels, "init": init_name, "seed": seed, "dice": dice, "wall_s": wall})
                    print(json.dumps({"dataset": name, **rows[-1]}), flush=True)
        agg = {}
        for labels in budgets:
            for init_name in ("random", "ld"):
                sel = [r["dice"] for r in rows if r["labels"] == labels and r["init"] == init_name]
                agg[f"{init_name}@{labels}"] = {c: {"mean": statistics.fmean(d[c] for d in sel), "std": statistics.pstdev([d[c] for d in sel]) if len(sel) > 1 else 0.0, "n": len(sel)} for c in sel[0]}
        result["datasets"][name] = {"data": data, "pretrain_run": str(ld_run), "pretrain_wall_s": t_pre, "runs": rows, "summary": agg}
    result["wall_s"] = round(time.time() - t_start, 1)

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    suffix = "_quick" if args.quick else ""
    (out / f"ld_transfer{suffix}.json").write_text(json.dumps(result, indent=2, default=str))
    lines = ["# LD pretraining -> fine-tuning with few labels", "", *(f"- {line}" for line in provenance_markdown(prov, result["wall_s"])),
             f"- image size {args.image_size}, pretrain {args.pretrain_steps} steps (stage 1: {args.stage1_steps or args.pretrain_steps // 5}) on TRAIN images without labels; fine-tune {args.finetune_steps} steps, identical for both inits; seeds {args.seeds}; test split Dice (mean +- std over seeds)", ""]
    for name, res in result["datasets"].items():
        if "skipped" in res:
            lines.append(f"## {name}: skipped ({res['skipped']})\n")
            continue
        lines += [f"## {name} (`{res['data']}`), pretraining {res['pretrain_wall_s']:.0f} s", ""]
        classes = list(next(iter(res["summary"].values())))
        lines += ["| labels | init | " + " | ".join(classes) + " |", "|---|---|" + "---|" * len(classes)]
        for key, per in res["summary"].items():
            init_name, labels = key.split("@")
            lines.append(f"| {labels} | {init_name} | " + " | ".join(f"{per[c]['mean']:.3f} +- {per[c]['std']:.3f}" for c in classes) + " |")
        lines.append("")
    r = result["retina"]
    lines += ["## skimage.data.retina() (real unlabeled fundus photograph)", "", f"LD pretraining, {r['steps']} steps, {r['wall_s']:.1f} s; last metrics row: `{r['last_row']}` (columns `{r['metrics_header']}`)", ""]
    (out / f"ld_transfer{suffix}.md").write_text("\n".join(lines))
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
