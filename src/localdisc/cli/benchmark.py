"""``localdisc benchmark CONFIG``: methods x label budgets x seeds, with tables, curves and a report."""

from __future__ import annotations

import argparse
from dataclasses import replace
from pathlib import Path

from ..tasks.benchmark import describe_plan, load_benchmark_config, run_benchmark
from ..tasks.benchmark_config import checked_seed
from .main import add_command


def register(sub) -> None:
    p = add_command(sub, "benchmark",
        description="Run a benchmark described by a YAML file (see configs/*.yaml): pretraining once per (method, seed) "
        "on the training images, fine-tuning per (method, budget, seed) with identical splits and budgets, evaluation on "
        "the test split. Finished cells are reused, so an interrupted benchmark continues where it stopped. Writes "
        "results.csv, per_image.csv, comparisons.csv, results.md, dice_vs_labels.png and report.html into --out.",
    )
    p.add_argument("config", metavar="CONFIG", help="benchmark YAML file (data spec, methods, budgets, seeds, profiles)")
    p.add_argument("--out", default=None, help="output folder (default: the config's 'out', else runs/benchmark-NAME-PROFILE)")
    p.add_argument("--profile", default=None, help="profile of the config to apply, e.g. quick (CPU, ~1 h) or full (GPU, paper-scale); default: the config's default_profile")
    p.add_argument("--methods", nargs="+", default=None, metavar="NAME", help="run only these method entries (random init is always included)")
    p.add_argument("--budgets", nargs="+", default=None, metavar="LABELS",
                   help="run only these label budgets of the profile (e.g. 2 all); the cells of the others are left as they are")
    p.add_argument("--data", default=None, help="override the config's data spec (e.g. your own copy: ph2:/path/to/PH2)")
    p.add_argument("--pretrain-seed", type=int, default=None, metavar="N",
                   help="train the one pretraining run shared by every fine-tuning seed with this seed (default: the config's "
                        "pretrain_seed); another N into another --out repeats the benchmark with another pretraining run "
                        "(compare the two with benchmarks/pretrain_runs.py)")
    p.add_argument("--device", default=None, help="auto | cpu | cuda | cuda:N (default: the config's device)")
    p.add_argument("--dry-run", action="store_true", help="print the plan (runs, cells and which are already finished) and exit")
    p.add_argument("--report-only", action="store_true", help="only rebuild the tables, plot and report from the cells finished so far")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    cfg = load_benchmark_config(args.config, args.profile, args.methods, args.budgets)
    if args.data:
        cfg = replace(cfg, data=args.data)
    if args.device:
        cfg = replace(cfg, device=args.device)
    if args.pretrain_seed is not None:
        cfg = replace(cfg, pretrain_seed=checked_seed(args.pretrain_seed, "--pretrain-seed"))
    out = Path(args.out or cfg.out or f"runs/benchmark-{cfg.name}" + (f"-{cfg.profile}" if cfg.profile else ""))
    if args.dry_run:
        print(describe_plan(cfg, out))
        return 0
    result = run_benchmark(cfg, out, report_only=args.report_only)
    print(f"pretraining runs trained: {len(result.pretrained)}, cells fine-tuned: {len(result.finetuned)}, "
          f"evaluated: {len(result.evaluated)}, reused: {len(result.reused)}")
    print(f"results: {out / 'results.md'}  report: {out / 'report.html'}")
    return 0
