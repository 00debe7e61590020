"""Compare methods from benchmark folders computed apart, when their random-init cells agree.

Two benchmark runs of one protocol in one numeric environment give random-init cells that agree
to the last digit (docs/results.md): the splits, label subsets and fine-tuning are then the same,
and the methods of both folders can be compared pair by pair (test image, seed), e.g. LD from
one run against baselines from another. This script refuses folders whose random-init rows
(per_image.csv) differ anywhere they overlap, or that hold the same method with other scores, and
reports every method minus the reference method (default ld) with the benchmark's two-way
bootstrap CI and the Holm-corrected p. `FOLDER:m1,m2` takes only those methods (and random
init, always checked) from a folder, e.g. to pair LD of one run with the baselines of a folder
that holds another LD run.

    python benchmarks/across_runs.py --runs runs/ph2-cpu runs/ph2-baselines:simclr,densecl --budgets 2 --name ph2_baselines_vs_ld
"""

from __future__ import annotations

import argparse
import csv
import sys
import time
from pathlib import Path

from localdisc.evaluation.stats import compare_to_reference, format_p
from localdisc.report.tables import comparison_table
from localdisc.runtime.provenance import write_result

ROOT = Path(__file__).resolve().parents[1]


def folder_and_methods(spec: str) -> tuple[str, set[str] | None]:
    """'FOLDER' -> (FOLDER, None: every method); 'FOLDER:m1,m2' -> (FOLDER, {random, m1, m2})."""
    folder, sep, names = spec.rpartition(":")
    if not sep or Path(spec).exists() or not names:
        return spec, None
    return folder, {"random", *(n.strip() for n in names.split(",") if n.strip())}


def merged_rows(folders: list[str], metric: str) -> list[dict[str, str]]:
    """The per_image.csv rows of every folder (each `FOLDER` or `FOLDER:m1,m2`), each (method,
    budget, seed, image) once; a ValueError names the first disagreement (random init, or a
    method found twice)."""
    seen: dict[tuple[str, str, str, str], tuple[str, str]] = {}
    rows = []
    for spec in folders:
        folder, methods = folder_and_methods(spec)
        with open(Path(folder) / "per_image.csv", newline="") as f:
            for r in csv.DictReader(f):
                if methods is not None and r["method"] not in methods:
                    continue
                key = (r["method"], r["budget"], r["seed"], r["id"])
                if key in seen:
                    first, value = seen[key]
                    if value != r[metric]:
                        raise ValueError(f"{folder}: {metric} of {key} is {r[metric]}, {first} has {value}: the runs do not share "
                                         "their cells (another environment or protocol); they cannot be paired")
                    continue
                seen[key] = (folder, r[metric])
                rows.append(r)
    return rows


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--runs", nargs="+", required=True, metavar="FOLDER[:METHODS]", help="benchmark folders (per_image.csv) sharing random init's cells; :m1,m2 takes only those methods from a folder")
    p.add_argument("--reference", default="ld", help="the method every other one is compared with")
    p.add_argument("--budgets", nargs="+", default=None, help="only these label budgets (default: those the reference has)")
    p.add_argument("--metric", default="dice_mean", help="per-image column compared (mean Dice over classes)")
    p.add_argument("--out", default=str(ROOT / "benchmarks" / "results"))
    p.add_argument("--name", default="across_runs")
    a = p.parse_args(argv)
    t0 = time.time()
    try:
        rows = merged_rows(a.runs, a.metric)
    except ValueError as e:
        print(f"across_runs: {e}", file=sys.stderr)
        return 2
    budgets = a.budgets or sorted({r["budget"] for r in rows if r["method"] == a.reference}, key=lambda b: (b == "all", float(b) if b != "all" else 0))
    rows = [r for r in rows if r["budget"] in budgets]
    shared_random = sum(r["method"] == "random" for r in rows)
    if not any(r["method"] == a.reference for r in rows):
        print(f"across_runs: no {a.reference} cells at budgets {budgets}", file=sys.stderr)
        return 2
    methods = list(dict.fromkeys(r["method"] for r in rows))
    to_random, to_reference = compare_to_reference(rows, [a.metric]), compare_to_reference(rows, [a.metric], reference=a.reference)
    lines = [f"# Every method minus {a.reference}, across benchmark runs", "",
             f"Folders: {', '.join(f'`{f}`' for f in a.runs)}; their random-init rows agree wherever they overlap "
             f"({shared_random} per-image rows at budgets {', '.join(budgets)}), so the methods rest on the same splits, label subsets "
             "and fine-tuning and are paired per (test image, seed).", "",
             comparison_table(to_random, methods, budgets, a.metric, "Minus random init").to_markdown(), "",
             comparison_table(to_reference, methods, budgets, a.metric, f"Minus {a.reference} (below 0: {a.reference} better)",
                              reference=a.reference).to_markdown(), "",
             "Holm-corrected p (over the rows of each table): " + "; ".join(
                 f"{c['method']} vs {ref} at {c['budget']}: {format_p(c['p_holm'])}"
                 for ref, comps in (("random", to_random), (a.reference, to_reference)) for c in comps)]
    payload = {"runs": a.runs, "reference": a.reference, "budgets": budgets, "metric": a.metric,
               "minus_random": to_random, "minus_reference": to_reference}
    _, md = write_result(a.out, a.name, payload, lines, argv=None if argv is None else ["benchmarks/across_runs.py", *argv], wall_s=time.time() - t0)
    print(f"wrote {md}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
