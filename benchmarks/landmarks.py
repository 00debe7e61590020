"""One-shot landmarks (chest X-rays by default, or synthetic fundus): LD center-sensitive matching vs two naive baselines.

Chest X-ray ground truth comes from the radiologists' outlines (benchmarks/make_cxr_landmarks.py):
each lung's centroid, apex and lowest point, and the cardiomediastinum ("heart") centroid; with
``--data synthetic-fundus...`` the optic disc and fovea centers known by construction. ONE
support image (the first training image, or --support) is annotated; every other image is a
query. Methods (localdisc.tasks.landmark_bench):
- ld: a pretrained LD run (--run, or one trained here on the train split), center-sensitive
  pooling with sigmas --sigma, argmax + parabola refinement over the whole image;
- ld window R: the same, searched within R times the image size of the support's relative
  position (``--search-radius``; one row per value);
- ld affine (with --align-affine): anchors every 8 px of the support matched into the query, a
  robust affine map carries the landmarks over ("ld affine"), then the windows are centred there;
- copy: the support's landmark position copied (in relative image coordinates);
- ncc: raw-intensity patch matching by normalized cross-correlation on the same resized grid.

Errors are reported on the common --eval-size grid (success rates within 2/4/8 px of that grid)
and in original pixels (MRE only, since the images range from 255 to 4095 px).

    python benchmarks/landmarks.py [--run RUN] [--quick]
    python benchmarks/landmarks.py --data synthetic-fundus:40:256x256 --name landmarks_fundus --run RUN

Writes benchmarks/results/NAME.{json,md} (NAME: --name, default landmarks_cxr).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

from localdisc.data.sources import resolve_source
from localdisc.methods.ld import LDConfig
from localdisc.runtime.provenance import write_result
from localdisc.tasks import landmark_bench as lb
from localdisc.tasks.bench_runs import add_pretrain_args, apply_quick, pretrain_config, pretrain_once, use_cpus
from localdisc.tasks.discover import load_run_model
from localdisc.utils import pick_device


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--data", default="cxr:/work/shared/data/CXR", help="images; landmarks come from --truth, the layout's own landmarks (synthetic-fundus), or the CXR masks")
    p.add_argument("--name", default="landmarks_cxr", help="results file name (without suffix)")
    p.add_argument("--run", default=None, help="pretrained LD run; default: train one into --work")
    p.add_argument("--work", default="benchmarks/_work/landmarks_cxr", help="folder for the trained run")
    p.add_argument("--truth", default=None, help="landmark JSON from make_cxr_landmarks.py (computed if absent)")
    p.add_argument("--support", default=None, help="support image id (default: first training image)")
    p.add_argument("--supports", type=int, default=1, help="annotated support images: --support (or the first training image) plus the next training images; answers are the median over supports")
    p.add_argument("--sigma", type=float, nargs="+", default=[2.0, 4.0, 8.0])
    p.add_argument("--search-radius", type=float, nargs="*", default=[0.15], help="extra LD rows with a search window of this fraction of the image size")
    p.add_argument("--align-affine", action="store_true", help="also the coarse-to-fine rows (affine map from anchor matches, then the windows)")
    p.add_argument("--field-mm", type=float, default=350.0, help="mm-equivalent errors: the longer image side is taken to span this many mm (350: a 14-inch radiograph; the CXR figures carry no pixel spacing)")
    p.add_argument("--eval-size", type=int, nargs=2, default=[256, 256])
    p.add_argument("--ncc-half", type=int, default=16, help="NCC template half-size on the eval grid")
    add_pretrain_args(p)
    p.add_argument("--max-images", type=int, default=0)
    p.add_argument("--max-queries", type=int, default=0)
    p.add_argument("--device", default="auto")
    p.add_argument("--quick", action="store_true", help="smoke test: tiny model, 4 pretraining steps, 5 queries")
    p.add_argument("--results", default="benchmarks/results", help="output folder (quick runs write into --work instead)")
    args = p.parse_args(argv)
    if args.quick:
        apply_quick(args, eval_size=[64, 64], max_images=8, max_queries=5, sigma=[1.0, 2.0], ncc_half=4)
    use_cpus()
    t0 = time.time()

    marks = lb.landmark_truth(args.data, args.truth, limit=(args.max_queries + 1) if args.quick else 0)
    supports, queries = lb.split_supports([s for s in resolve_source(args.data) if s.id in marks], args.support, args.supports)
    queries = queries[: args.max_queries or None]
    run = Path(args.run) if args.run else pretrain_once(pretrain_config(args, args.data, Path(args.work) / "ld", max_images=args.max_images), LDConfig(stage="both", grid=args.grid))
    device = str(pick_device(args.device))
    model = load_run_model(run, device)
    embed = lambda x: model.method.embed(x.to(model.device)).float().cpu()  # noqa: E731
    ev = tuple(args.eval_size)
    errors = lb.one_shot_errors(embed, model.size, model.channels, supports, queries, marks, args.sigma, args.search_radius, args.align_affine, ev, args.ncc_half, args.field_mm)
    names, methods = errors["names"], lb.summarize(errors)
    vs_copy = lb.against_copy(errors)
    selection = lb.select_on_train(errors, np.array([s.split == "test" for s in queries]))
    payload = {"quick": args.quick, "run": run, "support": supports[0].id, "supports": [x.id for x in supports], "num_queries": len(queries), "landmarks": names,
               "sigmas": args.sigma, "search_radius": args.search_radius, "align_affine": args.align_affine, "eval_grid": list(ev), "model_size": list(model.size),
               "methods": methods, "vs_copy": vs_copy, "selected": selection}
    lines = [f"# One-shot landmarks ({args.data.split(':')[0]}): LD vs naive baselines",
             f"- run: {run}; support(s) {', '.join(x.id for x in supports)}; {len(queries)} queries; sigmas {args.sigma}; errors on a {ev[0]}x{ev[1]} grid",
             "", "| method | MRE (grid px) | SD | within 2 px | within 4 px | within 8 px | MRE (orig px) |", "|---|---|---|---|---|---|---|"]
    for m, r in methods.items():
        o = r["overall"]
        lines.append(f"| {m} | {o['mre']:.2f} | {o['sd']:.2f} | {o['sr@2px']:.1%} | {o['sr@4px']:.1%} | {o['sr@8px']:.1%} | {r['mre_orig_px']:.1f} |")
    lines += ["", "Against copying the support's position (per query image, mean error over its landmarks; negative = closer than copy; "
              "95% bootstrap CI over query images):", "", "| method | mean difference (grid px) [95% CI] | paired test |", "|---|---|---|"]
    lines += [f"| {m} | {v['mean_diff']:+.2f} [{v['ci_low']:+.2f}, {v['ci_high']:+.2f}] | {v['test']} p={v['p_value']:.2g} (n={v['n_images']}) |" for m, v in vs_copy.items()]
    if selection:
        t = selection["test"]
        lines += ["", f"**Selected on the training split, scored on the test split**: `{selection['method']}` (chosen among the LD rows on {selection['selected_on']}); "
                  f"on {t['n_images']} test queries MRE {t['mean_a']:.2f} vs copy {t['mean_b']:.2f} grid px, difference {t['mean_diff']:+.2f} "
                  f"[{t['ci_low']:+.2f}, {t['ci_high']:+.2f}], {t['test']} p={t['p_value']:.2g}."]
    for title, key, fmt in (("Per landmark MRE (grid px):", "per_landmark", ".2f"),
                            (f"Per landmark MRE, mm-equivalent (each image's longer side taken as {args.field_mm:g} mm; the images carry no pixel spacing):", "per_landmark_mm_equivalent", ".1f")):
        lines += ["", title, "", "| landmark | " + " | ".join(methods) + " |", "|---|" + "---|" * len(methods)]
        for n in names:
            lines.append(f"| {n} | " + " | ".join(format(r[key][n]["mre"] if key == "per_landmark" else r[key][n], fmt) for r in methods.values()) + " |")
    lines.append("| all | " + " | ".join(f"{r['mre_mm_equivalent']:.1f}" for r in methods.values()) + " |")
    _, md = write_result(Path(args.work) if args.quick else Path(args.results), f"{args.name}_quick" if args.quick else args.name, payload, lines,
                         device=device, argv=None if argv is None else ["benchmarks/landmarks.py", *argv], wall_s=time.time() - t0)
    print(md.read_text())
    return 0


if __name__ == "__main__":
    sys.exit(main())
