"""Does a gain survive another pretraining run? Pretraining variance in the confidence interval.

A benchmark's CI resamples test images and fine-tuning seeds (label subsets) but rests on one
pretraining run per method. Given benchmark folders that repeat the same protocol with another
pretraining run of the method (their per_image.csv files), this reports the method minus the
reference (random init) per budget: in each run alone, and pooled over runs with a three-way
bootstrap that resamples test images, seeds AND pretraining runs as crossed clusters
(localdisc.evaluation.stats.cluster_bootstrap on an (images, seeds, runs) array). Each run is
compared with its own folder's reference cells. With two runs the between-run spread is
estimated from two values, so the pooled CI is a first look, not a precise interval.

    python benchmarks/pretrain_runs.py --runs first=runs/cxr-cpu second=runs/cxr-cpu-rerun --name pretrain_runs_cxr
"""

from __future__ import annotations

import argparse
import csv
import math
import sys
import time
from pathlib import Path

import numpy as np

from localdisc.evaluation.stats import cluster_bootstrap, format_p, verdict
from localdisc.runtime.provenance import write_result

ROOT = Path(__file__).resolve().parents[1]


def differences(rows: list[dict[str, str]], method: str, reference: str, metric: str) -> dict[tuple[str, str, str], float]:
    """{(budget, image id, seed): method - reference} over the pairs both have."""
    value = {(r["method"], r["budget"], r["id"], r["seed"]): float(r[metric] or "nan") for r in rows}
    return {k[1:]: v - value[(reference, *k[1:])] for k, v in value.items() if k[0] == method and (reference, *k[1:]) in value}


def stacked(per_run: list[dict[tuple[str, str, str], float]], budget: str) -> np.ndarray:
    """(n_images, n_seeds, n_runs) of differences at one budget, over the runs that have it; NaN
    where such a run lacks a pair."""
    per_run = [d for d in per_run if any(k[0] == budget for k in d)]
    keys = [k for d in per_run for k in d if k[0] == budget]
    images, seeds = sorted({k[1] for k in keys}), sorted({k[2] for k in keys})
    d = np.full((len(images), len(seeds), len(per_run)), np.nan)
    for r, diffs in enumerate(per_run):
        for i, image in enumerate(images):
            for s, seed in enumerate(seeds):
                d[i, s, r] = diffs.get((budget, image, seed), math.nan)
    return d


def cell(d: np.ndarray) -> dict:
    lo, hi, p = cluster_bootstrap(d)
    return {"mean_diff": float(np.nanmean(d)), "ci_low": lo, "ci_high": hi, "p_value": p, "verdict": verdict(lo, hi)}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--runs", nargs="+", required=True, metavar="NAME=FOLDER", help="benchmark folders (per_image.csv), one pretraining run each")
    p.add_argument("--method", default="ld")
    p.add_argument("--reference", default="random")
    p.add_argument("--metric", default="dice_mean", help="per-image column compared (mean Dice over classes)")
    p.add_argument("--out", default=str(ROOT / "benchmarks" / "results"))
    p.add_argument("--name", default="pretrain_runs")
    a = p.parse_args(argv)
    t0 = time.time()
    names, per_run = [], []
    for item in a.runs:
        name, folder = item.split("=", 1)
        with open(Path(folder) / "per_image.csv", newline="") as f:
            per_run.append(differences(list(csv.DictReader(f)), a.method, a.reference, a.metric))
        names.append(name)
    budgets = sorted(set().union(*({k[0] for k in d} for d in per_run)), key=lambda b: (b == "all", float(b) if b != "all" else 0))
    fmt = lambda c: f"{c['mean_diff']:+.3f} [{c['ci_low']:+.3f}, {c['ci_high']:+.3f}]"  # noqa: E731
    lines = [f"# {a.method} minus {a.reference} across pretraining runs", "",
             f"{a.metric}, {a.method} minus {a.reference} on matched (test image, seed) pairs [95% CI]. Per run: images and seeds resampled "
             f"(the benchmark's CI). Pooled: images, seeds and the pretraining runs that have the budget resampled as crossed clusters.", "",
             "| labels | " + " | ".join(names) + " | pooled over runs | p (pooled) | verdict (pooled) |", "|---:|" + "---|" * (len(names) + 3)]
    payload: dict = {"runs": dict(pair.split("=", 1) for pair in a.runs), "method": a.method, "reference": a.reference, "metric": a.metric, "budgets": {}}
    for b in budgets:
        have = [n for n, diffs in zip(names, per_run) if any(k[0] == b for k in diffs)]
        d = stacked(per_run, b)
        runs = dict(zip(have, (cell(d[:, :, r]) for r in range(d.shape[2]))))
        pooled = cell(d)
        payload["budgets"][b] = {"runs": runs, "pooled": pooled, "n_images": d.shape[0], "n_seeds": d.shape[1], "n_runs": len(have)}
        lines.append(f"| {b} | " + " | ".join(fmt(runs[n]) if n in runs else "not run" for n in names)
                     + f" | {fmt(pooled)} ({len(have)} run{'s' if len(have) != 1 else ''}) | {format_p(pooled['p_value'])} | {pooled['verdict']} |")
    _, md = write_result(a.out, a.name, payload, lines, argv=None if argv is None else ["benchmarks/pretrain_runs.py", *argv], wall_s=time.time() - t0)
    print(f"wrote {md}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
