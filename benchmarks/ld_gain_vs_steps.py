"""Does LD's gain over random init grow with pretraining compute? A learning curve.

Takes a finished ``localdisc benchmark ... --profile cpu`` folder and LD weights saved at
intermediate pretraining steps (the stage-1 result, and copies of stage-2 checkpoints, which
the run itself prunes to its last two), fine-tunes from each at the benchmark's smallest label
budget with the benchmark's seeds and fine-tuning protocol, and compares with the benchmark's
own random-init cells on the same test images (paired, test images as the unit;
localdisc.tasks.gain_curve). The last point is the benchmark's own LD row.

    python benchmarks/ld_gain_vs_steps.py --config configs/cxr.yaml --profile cpu \\
        --bench runs/bench-cxr-cpu --checkpoints runs/curve/cxr   # files cxr-s2-<step>.safetensors

Writes benchmarks/results/ld_gain_vs_steps.{json,md,png} (or --out), fine-tuning under --work.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from localdisc.report.bench_figures import gain_curve
from localdisc.runtime.provenance import write_result
from localdisc.tasks.benchmark import load_benchmark_config, plan
from localdisc.tasks.gain_curve import cells_rows, curve_points, finetune_point, gain_table, pseudo_run

ROOT = Path(__file__).resolve().parents[1]


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", required=True)
    p.add_argument("--profile", default="cpu")
    p.add_argument("--bench", required=True, help="finished benchmark folder (its random and ld cells are reused)")
    p.add_argument("--checkpoints", required=True, help="folder with <name>-s2-<step>.safetensors copies of stage-2 checkpoints")
    p.add_argument("--method", default="ld", help="the benchmark's LD entry whose transfer protocol the curve uses")
    p.add_argument("--steps", type=int, nargs="*", default=[], help="only these total pretraining steps (default: every checkpoint found)")
    p.add_argument("--work", default=str(ROOT / "benchmarks" / "_work" / "gain_vs_steps"))
    p.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "ld_gain_vs_steps"), help="result files OUT.{json,md,png}")
    args = p.parse_args(argv)
    t0 = time.time()
    cfg = load_benchmark_config(args.config, args.profile)
    work = Path(args.work) / cfg.name
    cells = [c for c in plan(cfg, Path(args.bench)) if c.budget == cfg.budgets[0]]
    ld_cells = {c.seed: c for c in cells if c.method.name == args.method}
    rnd_cells = {c.seed: c for c in cells if c.method.name == "random"}
    entry, pre = ld_cells[cfg.seeds[0]].method, ld_cells[cfg.seeds[0]].pretrain_dir
    points, total = curve_points(pre, Path(args.checkpoints), cfg.name, args.steps)
    results = []
    for steps, weights in points:
        run = pseudo_run(weights, pre / "stage1", work / f"ld-{steps}" / "pretrain")  # same network as the final run
        results.append((steps, finetune_point(cfg, entry, run, work / f"ld-{steps}", f"ld@{steps}")))
        print(f"LD after {steps} steps: fine-tuned {len(cfg.seeds)} seeds", flush=True)
    results.append((total, cells_rows(ld_cells, args.method)))
    table = gain_table(results, cells_rows(rnd_cells, "random"))

    out = Path(args.out)
    note = ("one LD pretraining run; earlier points are its stage-1 result and saved stage-2 checkpoints; each point is "
            "fine-tuned with the benchmark's protocol and compared with the benchmark's random-init cells")
    payload = {"dataset": cfg.name, "profile": args.profile, "method": args.method, "finetune": entry.finetune, "budget": cfg.budgets[0], "seeds": cfg.seeds,
               "points": table, "note": note}
    lines = [f"# LD minus random init vs pretraining steps ({cfg.name}, {cfg.budgets[0]} labeled image(s), seeds {cfg.seeds})",
             f"- transfer protocol: the benchmark's `{args.method}` entry (fine-tuning overrides: {entry.finetune or 'none, the defaults'})", "",
             "| LD pretraining steps | mean Dice difference | 95% CI | p |", "|---:|---:|---|---:|"]
    lines += [f"| {t['pretrain_steps']} | {t['mean_diff']:+.3f} | [{t['ci_low']:+.3f}, {t['ci_high']:+.3f}] | {t['p_value']:.2g} |" for t in table]
    lines += ["", note + "."]
    _, md = write_result(out.parent, out.name, payload, lines, device=cfg.device, argv=None if argv is None else ["benchmarks/ld_gain_vs_steps.py", *argv],
                         wall_s=time.time() - t0)
    gain_curve([t["pretrain_steps"] for t in table], [t["mean_diff"] for t in table], [t["ci_low"] for t in table], [t["ci_high"] for t in table],
               out.with_suffix(".png"), f"{cfg.name}, {cfg.budgets[0]} label(s): gain vs compute (95% CI)")
    print(md.read_text())
    return 0


if __name__ == "__main__":
    sys.exit(main())
