"""Shape-guided vessel discovery without labels: ld-shape with SIMULATED vessel priors.

1. Pretrain ``ld-shape`` (K=8, LD stage 1 then stage 2 + adversarial shape prior on cluster 0)
   on the synthetic fundus TRAIN images; priors come from the shape simulator (``--prior-kind``:
   whole-fundus vasculature ``retina``, or generic ``vessels`` trees), never the fundus labels.
2. Score on the synthetic fundus TEST images, inside the field of view: Dice/IoU/accuracy/AUC of
   a_0 > 0.5 ("threshold") and of the prototype rule, against two unsupervised baselines on the
   green channel (vessels are dark): Otsu threshold, and Frangi vesselness thresholded by Otsu.
3. The real photograph ``skimage.data.retina()`` (unlabeled): the same model and baselines,
   saved side by side as an overlay PNG (image | ld-shape | Otsu | Frangi).

    python benchmarks/discover_vessels.py [--quick]

Writes benchmarks/results/discover_vessels.{json,md} and discover_vessels_retina.png.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from localdisc.data.sources import resolve_source
from localdisc.report.bench_figures import dice_curve, overlay_strip
from localdisc.runtime.provenance import provenance, write_result
from localdisc.tasks.bench_runs import add_pretrain_args, apply_quick, images_own_size, use_cpus
from localdisc.tasks.discover import load_run_model
from localdisc.tasks.shape_runs import add_shape_run_args, describe_priors, grow_with_curve, run_name
from localdisc.tasks.shape_scores import RULES, retina_panels, score_vessel_rules
from localdisc.utils import pick_device


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", default="synthetic-fundus:40:256x256")
    p.add_argument("--run", default=None, help="an ld-shape run (default: train one into --work)")
    p.add_argument("--work", default="benchmarks/_work/discover_vessels")
    add_pretrain_args(p)
    add_shape_run_args(p)
    p.add_argument("--name", default="discover_vessels", help="results file name (without suffix)")
    p.add_argument("--curve-steps", type=int, nargs="*", default=[], help="also score the run when it has trained this many steps in all (stage 1 + 2; each above stage 1): the curve of Dice against steps")
    p.add_argument("--retina-size", type=int, default=0, help="resize skimage's retina (1411 px) to this side (0 = keep)")
    p.add_argument("--retina-rule", default="chosen", choices=["chosen", "threshold", "argmax", "prototype"], help="prediction rule shown for the real photograph (chosen: the rule with the best Dice on the training images)")
    p.add_argument("--device", default="auto")
    p.add_argument("--quick", action="store_true", help="smoke test: tiny data and model, 4 steps")
    p.add_argument("--results", default="benchmarks/results", help="output folder (quick runs write into --work instead)")
    args = p.parse_args(argv)
    if args.quick:  # curve_steps [3]: exercises growing the run in segments
        apply_quick(args, data="synthetic-fundus:6:64x64", priors=8, disc_width=4, disc_layers=2, retina_size=256, curve_steps=[3])
    args.prior_size = args.prior_size or images_own_size(args.data)
    use_cpus()
    t0 = time.time()
    work, device = Path(args.work), str(pick_device(args.device))
    # before anything is written: the result figures are tracked files, and would mark the checkout dirty
    prov = provenance(device, None if argv is None else ["benchmarks/discover_vessels.py", *argv])
    samples = resolve_source(args.data)
    test = [s for s in samples if s.split == "test"]
    run = Path(args.run) if args.run else work / run_name(args)
    curve = [] if args.run else grow_with_curve(args.data, run, args, args.curve_steps, lambda r: score_vessel_rules(load_run_model(r, device), test))
    model = load_run_model(run, device)
    summary = score_vessel_rules(model, test)
    if curve:
        curve.append({"steps": args.pretrain_steps, "scores": summary})
    # the rule a user would pick with a few labeled images: the best Dice on the TRAIN images, then scored on test
    train_rules = score_vessel_rules(model, [s for s in samples if s.split != "test"], baselines=False)
    chosen = max(train_rules, key=lambda m: train_rules[m]["dice"])
    summary["ld-shape, rule chosen on train"] = {**summary[chosen], "rule": chosen}

    out = work if args.quick else Path(args.results)
    retina, fov, panels = retina_panels(model, chosen.split()[-1] if args.retina_rule == "chosen" else args.retina_rule, args.retina_size)
    fig = overlay_strip(retina, panels, out / f"{args.name}_retina.png", work)
    retina_frac = {k: float(v[fov].mean()) for k, v in panels.items()}
    priors = describe_priors(args)
    payload = {"quick": args.quick, "run": run, "data": args.data, "num_test_images": len(test), "priors": priors,
               "config": {k: v for k, v in vars(args).items() if k not in ("quick", "results")}, "test_scores_inside_fov": summary,
               "retina": {"figure": fig, "vessel_fraction_in_fov": retina_frac, "panels": ["image", *panels]},
               "curve": curve, "train_scores_inside_fov": train_rules, "rule_chosen_on_train": chosen}
    lines = ["# Shape-guided vessel discovery (no labels; simulated vessel priors)", f"- priors: {priors} (never the fundus labels)",
             f"- run: {run}; data {args.data}, {len(test)} test images; scores inside the FOV", "", "| method | Dice | IoU | accuracy | AUC |", "|---|---|---|---|---|"]
    for m, r in summary.items():
        label = f"**{m}** ({r['rule']}; train Dice " + ", ".join(f"{k.split()[-1]} {v['dice']:.3f}" for k, v in train_rules.items()) + ")" if "rule" in r else m
        lines.append(f"| {label} | {r['dice']:.3f} | {r['iou']:.3f} | {r['accuracy']:.3f} | {r['auc']:.3f} |")
    lines += ["", f"Real photograph `skimage.data.retina()` (unlabeled): {fig.name} (image | ld-shape | Otsu | Frangi); "
              "vessel fraction of the FOV: " + ", ".join(f"{k} {v:.3f}" for k, v in retina_frac.items())]
    if curve:
        steps = [c["steps"] for c in curve]
        dice_curve(steps, {f"ld-shape {r}": [c["scores"][f"ld-shape {r}"]["dice"] for c in curve] for r in RULES},
                   {b: curve[-1]["scores"][b]["dice"] for b in ("otsu", "frangi")}, out / f"{args.name}_curve.png")
        lines += ["", f"Dice inside the FOV against pretraining steps ({args.name}_curve.png); each row is the same run, grown in segments:", "",
                  "| steps | ld-shape threshold | ld-shape argmax | ld-shape prototype | AUC (a_0) |", "|---|---|---|---|---|"]
        lines += [f"| {c['steps']} | " + " | ".join(f"{c['scores'][f'ld-shape {r}']['dice']:.3f}" for r in RULES) + f" | {c['scores']['ld-shape threshold']['auc']:.3f} |" for c in curve]
    _, md = write_result(out, args.name, payload, lines, prov=prov, wall_s=time.time() - t0)
    print(md.read_text())
    return 0


if __name__ == "__main__":
    sys.exit(main())
