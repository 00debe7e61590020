"""Does a verdict from a few labeled images agree with the full benchmark's test result?

Reads verdict folders (`localdisc verdict` outputs: verdict.json) and a benchmark folder
(comparisons.csv: each method minus random init on the test split, per budget), and writes, per
verdict, whether it agrees at each budget: helps/hurts with the benchmark's sign, or "cannot
tell" where the benchmark's CI includes 0 (localdisc.tasks.verdict.agreement). The verdict's
labeled images come from the training split; the benchmark's test images are never shown to it.

    python benchmarks/verdict_check.py --benchmark runs/ph2-cpu-baselines \\
        --verdicts ld=runs/verdict-ld densecl=runs/verdict-densecl --name verdict_check_ph2
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
import time
from pathlib import Path

from localdisc.runtime.provenance import write_result
from localdisc.tasks.verdict import agreement

ROOT = Path(__file__).resolve().parents[1]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--benchmark", required=True, help="benchmark folder (its comparisons.csv)")
    p.add_argument("--verdicts", nargs="+", required=True, metavar="METHOD=FOLDER", help="benchmark method name = verdict folder")
    p.add_argument("--metric", default="dice_mean")
    p.add_argument("--out", default=str(ROOT / "benchmarks" / "results"))
    p.add_argument("--name", default="verdict_check")
    a = p.parse_args(argv)
    t0 = time.time()
    with open(Path(a.benchmark) / "comparisons.csv", newline="") as f:
        comparisons = [r for r in csv.DictReader(f) if r["metric"] == a.metric]
    lines = ["# Verdict from a few labeled images vs the full benchmark", "",
             "| method | verdict (labeled images, minutes) | budget | benchmark minus random [95% CI] | agrees | same sign |", "|---|---|---|---|---|---|"]
    payload: dict = {"benchmark": str(a.benchmark), "metric": a.metric, "checks": {}}
    for item in a.verdicts:
        method, folder = item.split("=", 1)
        result = json.loads((Path(folder) / "verdict.json").read_text())
        (name, verdict), = result["comparisons"].items()
        rows = agreement(verdict, [r for r in comparisons if r["method"] == method])
        payload["checks"][method] = {"verdict_run": name, "images": result["images"], "minutes": result["minutes"], **verdict, "budgets": rows}
        said = f"{verdict['verdict']} {verdict['mean_diff']:+.3f} [{verdict['ci_low']:+.3f}, {verdict['ci_high']:+.3f}] ({result['images']} images, {result['minutes']:g} min)"
        lines += [f"| {method} | {said} | {r['budget']} | {r['benchmark_mean_diff']:+.3f} [{r['benchmark_ci'][0]:+.3f}, {r['benchmark_ci'][1]:+.3f}] "
                  f"{r['benchmark_verdict']} | {'yes' if r['agrees'] else 'NO'} | {'yes' if r['same_sign'] else 'no'} |" for r in rows]
    lines += ["", "Agrees: the verdict says helps/hurts and the benchmark's mean has that sign, or it cannot tell and the benchmark's CI includes 0."]
    _, md = write_result(a.out, a.name, payload, lines, argv=None if argv is None else ["benchmarks/verdict_check.py", *argv], wall_s=time.time() - t0)
    print(f"wrote {md}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
