"""How far is a prior set from the real structure? A discriminator's answer.

Shape-guided discovery (``ld-shape``) converges to the true structure only if the true masks
are indistinguishable from the priors to its discriminator D: otherwise the GAN's equilibrium
is not the structure, whatever the training length. This benchmark trains the ld-shape
discriminator (same architecture and learning rate) to tell each prior set ("real") from the
TRUE vessel masks of the target images ("fake"), both warped by the views' random geometry,
and reports D's patch accuracy at the end: 0.5 means D cannot tell them apart
(localdisc.tasks.prior_gap).

Prior sets: the generic branching trees (simulate:vessels, as in discover_vessels with
--prior-kind vessels), whole-fundus vasculature (simulate:retina) simulated at the training size
or at the images' own size and resized with them, and optionally folders of masks.
The true masks are used only here, to measure the gap; ld-shape itself never sees them.

    python benchmarks/prior_gap.py [--quick]

Writes benchmarks/results/prior_gap.{json,md}.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from localdisc.runtime.provenance import write_result
from localdisc.tasks.bench_runs import images_own_size, use_cpus
from localdisc.tasks.prior_gap import gap_row, prior_sets, target_masks


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", default="synthetic-fundus:40:256x256", help="target images with vessel masks (train split)")
    p.add_argument("--image-size", type=int, nargs=2, default=[128, 128])
    p.add_argument("--priors", type=int, default=200, help="simulated masks per prior set")
    p.add_argument("--prior-roots", type=int, default=4, help="n_roots of the generic vessel trees (as discover_vessels)")
    p.add_argument("--folder", nargs="*", default=[], help="extra prior sets: folders of masks")
    p.add_argument("--steps", type=int, default=400, help="discriminator steps per prior set")
    p.add_argument("--last", type=int, default=50, help="average D's accuracy over this many final steps")
    p.add_argument("--batch", type=int, default=16)
    p.add_argument("--lr", type=float, default=1e-3, help="Adam lr (times the ld-shape disc_lr_scale, as in training)")
    p.add_argument("--seeds", type=int, default=2, help="repeat each measurement with this many seeds")
    p.add_argument("--quick", action="store_true", help="smoke test: 64x64, 8 priors, 20 steps")
    p.add_argument("--results", default="benchmarks/results")
    args = p.parse_args(argv)
    if args.quick:
        args.data, args.image_size, args.priors, args.steps, args.last, args.batch, args.seeds = "synthetic-fundus:6:64x64", [64, 64], 8, 20, 5, 4, 1
    use_cpus()
    t0 = time.time()
    size = tuple(args.image_size)
    truth = target_masks(args.data, size)
    rows = {}
    for name, priors in prior_sets(args.priors, args.prior_roots, size, images_own_size(args.data), args.folder).items():
        rows[name] = gap_row(priors, truth, args.seeds, steps=args.steps, last=args.last, batch=args.batch, lr=args.lr)
        print(name, rows[name], flush=True)

    fraction = float(truth.mean())
    payload = {"quick": args.quick, "data": args.data, "image_size": list(size), "true_foreground_fraction": fraction,
               "config": {k: v for k, v in vars(args).items() if k not in ("quick", "results")}, "prior_sets": rows}
    lines = ["# Prior gap: can the ld-shape discriminator tell the priors from the true masks?",
             f"- target: true vessel masks of the {args.data} train images at {size[0]}x{size[1]} (foreground {fraction:.3f});"
             f" D trained {args.steps} steps, accuracy averaged over the last {args.last}, {args.seeds} seed(s)",
             "- 0.5 = indistinguishable (the true vessels are an equilibrium of the shape-guided GAN); near 1 = the priors steer away from them",
             "", "| prior set | foreground | D patch accuracy | D loss |", "|---|---:|---:|---:|"]
    lines += [f"| {n} | {r['foreground_fraction']:.3f} | {r['patch_accuracy']:.2f} | {r['d_loss']:.3f} |" for n, r in rows.items()]
    out = Path("benchmarks/_work/prior_gap_quick") if args.quick else Path(args.results)
    _, md = write_result(out, "prior_gap", payload, lines, argv=None if argv is None else ["benchmarks/prior_gap.py", *argv], wall_s=time.time() - t0)
    print(md.read_text())
    return 0


if __name__ == "__main__":
    sys.exit(main())
