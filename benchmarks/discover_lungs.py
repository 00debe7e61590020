"""Shape-guided lung discovery on real chest X-rays, without labels: ld-shape with SIMULATED lung priors.

1. LD stage 1 on the CXR TRAIN images (or ``--stage1 RUN``), then two stage-2 runs initialized
   from it that differ ONLY in the shape prior's weight: ``ld-shape`` (simulated lung fields from
   the shape simulator, kind ``lungs``, guide cluster 0; adversarial weight ``--adv-weight``) and
   a control with adversarial weight 0 (plain LD with K=8: cluster 0 is whatever cluster it
   becomes). Neither ever sees a label. Stage 2 keeps the rot90/flip of view b (``--dihedral``):
   without it the generator paints the same lung-shaped band at the same place in every image.
2. TEST split: Dice of the guided structure against the union of the radiologists' left and
   right lung outlines, per image, at ``--eval-size``. Rows: ld-shape with each prediction rule
   (argmax_k a_k = 0; a_0 > 0.5; prototype rule); the control's cluster 0; the control's best
   single cluster chosen WITH the test labels (an oracle); Otsu on the grey image (lungs hold
   air and are dark); everything (the whole image called lung: the floor any method must clear).
3. Overlays of the first test images (yellow: hit, red: false positive, green: missed).

    python benchmarks/discover_lungs.py [--quick]

Writes benchmarks/results/discover_lungs.{json,md} and discover_lungs_overlays.png.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

from localdisc.data.sources import resolve_source
from localdisc.report.bench_figures import overlay_grid
from localdisc.runtime.provenance import provenance, write_result
from localdisc.tasks.bench_runs import add_pretrain_args, apply_quick, use_cpus
from localdisc.tasks.discover import load_run_model
from localdisc.tasks.shape_runs import train_lung_runs
from localdisc.tasks.shape_scores import score_lungs
from localdisc.utils import pick_device


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", default="cxr:/work/shared/data/CXR")
    p.add_argument("--work", default="benchmarks/_work/discover_lungs")
    p.add_argument("--stage1", default=None, help="an LD stage-1 run to start both stage-2 runs from (default: train one into --work)")
    p.add_argument("--stage1-steps", type=int, default=160)
    add_pretrain_args(p)
    p.add_argument("--priors", type=int, default=200, help="simulated lung-field prior masks")
    p.add_argument("--adv-weight", type=float, default=1.0)
    p.add_argument("--disc-layers", type=int, default=5, help="discriminator stride-2 layers: 4 judges ~46 px patches at 128^2, 5 sees a lung field whole")
    p.add_argument("--dihedral", type=int, default=1, choices=[0, 1], help="stage 2: view b gets a random rot90/flip, undone on its maps (1) or not (0). "
                   "Without it the generator can paint one lung-shaped pattern at a fixed place in every image; with it, that pattern comes back rotated from view b and D rejects it")
    p.add_argument("--eval-size", type=int, nargs=2, default=[256, 256])
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="auto")
    p.add_argument("--quick", action="store_true", help="smoke test: tiny model, 4 steps, 4 test images")
    p.add_argument("--results", default="benchmarks/results", help="output folder (quick runs write into --work instead)")
    args = p.parse_args(argv)
    if args.quick:
        apply_quick(args, stage1_steps=2, priors=4)
    use_cpus()
    t0 = time.time()
    work, args.device = Path(args.work), str(pick_device(args.device))
    # before anything is written: the result figure is a tracked file, and would mark the checkout dirty
    prov = provenance(args.device, None if argv is None else ["benchmarks/discover_lungs.py", *argv])
    runs = train_lung_runs(args, work)
    shape, control = load_run_model(runs["ld-shape"], args.device), load_run_model(runs["control"], args.device)
    test = [s for s in resolve_source(args.data) if s.split == "test"][: 4 if args.quick else None]
    ev = tuple(args.eval_size)
    scored = score_lungs(shape, control, test, ev)
    summary = {m: {"dice_mean": float(np.mean(v)), "dice_sd": float(np.std(v))} for m, v in scored["dice"].items()}
    per_cluster = [float(x) for x in scored["control_k"].mean(0)]

    out = work if args.quick else Path(args.results)
    fig = overlay_grid([(grey, truth, [shape_pred, otsu]) for grey, truth, shape_pred, otsu in scored["panels"]],
                       ["chest X-ray", "truth (lungs)", "ld-shape, argmax", "Otsu threshold"], out / "discover_lungs_overlays.png", work / "overlays")
    priors = f"{args.priors} simulated lung fields (kind lungs)"
    payload = {"quick": args.quick, "runs": runs, "data": args.data, "num_test_images": len(test), "priors": priors,
               "config": {k: v for k, v in vars(args).items() if k not in ("quick", "results")}, "dice_lungs_test": summary,
               "control_dice_per_cluster": per_cluster, "figure": fig}
    lines = ["# Shape-guided lung discovery on chest X-rays (no labels; simulated lung priors)",
             f"- data {args.data}: {len(test)} test images; truth = left + right lung outlines; Dice at {ev[0]}x{ev[1]}",
             f"- runs: {', '.join(f'{k} {v}' for k, v in runs.items())}; priors: {priors}", "",
             "| method | Dice (mean ± SD over images) |", "|---|---|"]
    lines += [f"| {m} | {r['dice_mean']:.3f} ± {r['dice_sd']:.3f} |" for m, r in summary.items()]
    lines += ["", f"Control, Dice of each cluster: {', '.join(f'{x:.2f}' for x in per_cluster)}",
              f"Overlays: {fig.name} (image | truth | ld-shape argmax | Otsu; yellow hit, red false positive, green missed)"]
    _, md = write_result(out, "discover_lungs", payload, lines, prov=prov, wall_s=time.time() - t0)
    print(md.read_text())
    return 0


if __name__ == "__main__":
    sys.exit(main())
