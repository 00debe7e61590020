"""Fine-tuning length as part of every method's recipe: is a gain only a head start?

Reads benchmark folders run with the same protocol at different fine-tuning lengths (e.g. PH2's
`cpu-baselines` cells at 200 steps and its `cpu-length` profile at 400), and reports every
method minus random init (1) at each fixed length and (2) with the length chosen per method,
budget and seed on validation Dice (the chosen cell's test scores stand for it; test is never
used to choose), and, where LD is among them, every method minus LD at the chosen lengths.
Methods and cells present at every length only.

    python benchmarks/finetune_length.py --runs 200=runs/ph2-cpu-baselines 400=runs/ph2-cpu-length --name finetune_length_ph2
"""

from __future__ import annotations

import argparse
import sys
import time
from collections import Counter
from pathlib import Path

from localdisc.evaluation.stats import compare_to_reference
from localdisc.report.benchmark_report import collect
from localdisc.report.selection import finished_cells, length_choice
from localdisc.report.tables import comparison_table
from localdisc.runtime.provenance import write_result

ROOT = Path(__file__).resolve().parents[1]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--runs", nargs="+", required=True, metavar="STEPS=FOLDER", help="benchmark folders and their fine-tuning steps")
    p.add_argument("--metric", default="dice_mean", help="per-image column compared (mean Dice over classes)")
    p.add_argument("--out", default=str(ROOT / "benchmarks" / "results"))
    p.add_argument("--name", default="finetune_length")
    a = p.parse_args(argv)
    t0 = time.time()
    by_length = {int(n): collect(finished_cells(folder)) for n, folder in (item.split("=", 1) for item in a.runs)}
    shared = set.intersection(*({r["method"] for r in recs} for recs, _ in by_length.values()))
    by_length = {n: ([r for r in recs if r["method"] in shared], [r for r in rows if r["method"] in shared]) for n, (recs, rows) in by_length.items()}
    methods = sorted(shared - {"random"})
    budgets = sorted(set.intersection(*({r["budget"] for r in recs} for recs, _ in by_length.values())), key=lambda b: (b == "all", float(b) if b != "all" else 0))
    tables, payload = [], {"lengths": sorted(by_length), "fixed": {}, "chosen": {}}
    for n, (_, rows) in sorted(by_length.items()):
        comps = compare_to_reference(rows, [a.metric])
        payload["fixed"][n] = comps
        tables.append(comparison_table(comps, methods, budgets, a.metric, f"{n} fine-tuning steps for every method: minus random init"))
    chosen, rows = length_choice(by_length)
    comps = compare_to_reference(rows, [a.metric])
    payload["chosen"] = {"comparisons": comps, "cells": [{k: r[k] for k in ("method", "budget", "seed", "steps", "best_val_dice")} for r in chosen]}
    tables.append(comparison_table(comps, methods, budgets, a.metric, "Length chosen per method, budget and seed on validation Dice: minus random init"))
    if "ld" in methods:  # the comparison a user makes: each baseline at its best length minus LD at its own
        versus_ld = compare_to_reference(rows, [a.metric], reference="ld")
        payload["chosen_vs_ld"] = versus_ld
        tables.append(comparison_table(versus_ld, [m for m in ["random", *methods] if m != "ld"], budgets, a.metric,
                                       "Length chosen per method, budget and seed on validation Dice: minus LD (below 0 = LD better)", reference="ld"))
    counts = Counter((r["method"], r["steps"]) for r in chosen)
    lines = ["# Fine-tuning length: is the gain a head start?", "",
             f"Lengths {sorted(by_length)} (steps); the same cells (method, budget, seed) at each. Chosen lengths: "
             + "; ".join(f"{m}: " + ", ".join(f"{n} steps x{counts[(m, n)]}" for n in sorted(by_length) if counts[(m, n)]) for m in ["random", *methods]) + ".", ""]
    for t in tables:
        lines += [t.to_markdown(), ""]
    _, md = write_result(a.out, a.name, payload, lines, argv=None if argv is None else ["benchmarks/finetune_length.py", *argv], wall_s=time.time() - t0)
    print(f"wrote {md}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
