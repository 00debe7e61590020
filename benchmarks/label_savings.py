"""PDCR + UAFS's claim, "a quarter of the labels for the same Dice", measured on a benchmark folder.

For each method: the labeled images it needs to reach random init's mean Dice with ALL labels
(first crossing of its Dice-vs-labels curve, linear in log labels), the saving (all labels /
needed) with a 95% two-way cluster bootstrap CI over test images and seeds, and the share of
resamples below a 2x saving (localdisc.evaluation.savings). Nothing is chosen: every cell is the
benchmark's, scored on its test split.

    localdisc benchmark configs/ph2.yaml --profile cpu-savings --out runs/ph2-cpu-baselines
    python benchmarks/label_savings.py --benchmark runs/ph2-cpu-baselines --budgets 10 28 all \
        --methods random random+pdcr+uafs ld ld+pdcr+uafs --name label_savings_ph2
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path

import numpy as np

from localdisc.evaluation.savings import label_savings
from localdisc.report.benchmark_report import collect
from localdisc.report.selection import finished_cells
from localdisc.runtime.provenance import write_result

ROOT = Path(__file__).resolve().parents[1]


def _labels(n: float, status: str) -> str:
    return {"at_most": f"<= {n:g}", "never": "not reached"}.get(status, f"{n:.0f}")


def _finite(v: float) -> float | None:
    return v if math.isfinite(v) else None


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--benchmark", required=True, help="benchmark folder (its finished cells are read)")
    p.add_argument("--budgets", nargs="+", required=True, help="budgets read, smallest to all (every method needs every one)")
    p.add_argument("--methods", nargs="+", required=True, help="methods compared; random init (the reference) first")
    p.add_argument("--metric", default="dice_mean", help="per-image column (mean Dice over classes)")
    p.add_argument("--samples", type=int, default=2000, help="bootstrap resamples (at least 1)")
    p.add_argument("--out", default=str(ROOT / "benchmarks" / "results"))
    p.add_argument("--name", default="label_savings")
    a = p.parse_args(argv)
    t0 = time.time()
    records, per_image = collect(finished_cells(a.benchmark))
    records = [r for r in records if r["method"] in a.methods and r["budget"] in a.budgets]
    per_image = [r for r in per_image if r["method"] in a.methods and r["budget"] in a.budgets]
    missing = sorted({(m, b) for m in a.methods for b in a.budgets} - {(r["method"], r["budget"]) for r in records})
    if missing:
        print(f"{a.benchmark}: no finished cells for {missing}", file=sys.stderr)
        return 2
    if per_image and a.metric not in per_image[0]:
        print(f"{a.benchmark}: no per-image column {a.metric!r} (has {sorted(per_image[0])})", file=sys.stderr)
        return 2
    n_labels = [next(float(r["n_labels"]) for r in records if r["budget"] == b) for b in a.budgets]
    seeds = sorted({r["seed"] for r in records})
    try:
        rows = label_savings(per_image, a.methods, a.budgets, n_labels, metric=a.metric, samples=a.samples)
    except ValueError as e:
        print(f"{a.benchmark}: {e}", file=sys.stderr)
        return 2
    means = {(m, b): [float(r[a.metric]) for r in per_image if r["method"] == m and r["budget"] == b] for m in a.methods for b in a.budgets}
    n_all = max(n_labels)
    lines = ["# Label savings: labels needed to reach random init's Dice with all labels", "",
             f"Benchmark cells at budgets {', '.join(f'{b} ({n:g} labels)' for b, n in zip(a.budgets, n_labels))}; seeds {seeds}; "
             f"target: random init's mean Dice with all {n_all:g} labels = {rows[0]['target']:.3f} (test split).", "",
             "| method | " + " | ".join(f"Dice @ {b}" for b in a.budgets) + " | labels needed [95% CI] | saving [95% CI] | P(saving < 2x) |",
             "|---|" + "---|" * (len(a.budgets) + 3)]
    for r in rows:
        dice = [float(np.nanmean(means[(r["method"], b)])) for b in a.budgets]
        lines.append(f"| {r['method']} | " + " | ".join(f"{d:.3f}" for d in dice)
                     + f" | {_labels(r['needed'], r['status'])} [{r['needed_low']:.0f}, {r['needed_high']:.0f}]"
                     + f" | x{r['savings']:.2f} [x{r['savings_low']:.2f}, x{r['savings_high']:.2f}] | {r['p_two_fold']:.3f} |")
    lines += ["", "Labels needed: first crossing of the target on the method's mean-Dice curve, linear in log labels between "
              "budgets ('<= n': already at the target with the smallest budget, so the saving is a lower bound, as is the upper end "
              "of a CI whose resamples reach it there; 'not reached': below the target even with all labels, an upper CI bound of inf). Saving = all labels / labels needed. CI: "
              f"{a.samples} two-way cluster bootstrap resamples (test images and seeds), curves and target recomputed in each. "
              "P(saving < 2x): the share of resamples below a 2x saving."]
    payload = {"benchmark_budgets": a.budgets, "n_labels": n_labels, "seeds": seeds,
               "rows": [{k: (_finite(v) if isinstance(v, float) else v) for k, v in r.items()} for r in rows]}
    _, md = write_result(a.out, a.name, payload, lines, argv=None if argv is None else ["benchmarks/label_savings.py", *argv], wall_s=time.time() - t0)
    print(f"wrote {md}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
