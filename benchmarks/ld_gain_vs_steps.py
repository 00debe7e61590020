"""Does LD's gain over random init grow with pretraining compute? A learning curve.

Takes a finished ``localdisc benchmark ... --profile cpu`` folder and LD weights saved at
intermediate pretraining steps (the stage-1 result, and copies of stage-2 checkpoints, which
the run itself prunes to its last two), fine-tunes from each at the benchmark's smallest label
budget with the benchmark's seeds and fine-tuning protocol, and compares with the benchmark's
own random-init cells on the same test images (paired, test images as the unit). The last
point is the benchmark's own LD row.

    python benchmarks/ld_gain_vs_steps.py --config configs/cxr.yaml --profile cpu \
        --bench runs/bench-cxr-cpu --checkpoints runs/curve/cxr   # files cxr-s2-<step>.safetensors

Writes benchmarks/results/ld_gain_vs_steps.{json,md,png} (or --out), fine-tuning under --work.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def pseudo_run(weights: Path, template: Path, out: Path) -> Path:
    """A pretraining run folder (backbone.safetensors + backbone.json) from a full LD state dict."""
    from localdisc.train.checkpoint import load_weights, save_weights

    out.mkdir(parents=True, exist_ok=True)
    state = load_weights(weights)
    save_weights({k[len("backbone."):]: v for k, v in state.items() if k.startswith("backbone.")}, out / "backbone.safetensors", metadata={"method": "ld"})
    shutil.copy(template / "backbone.json", out / "backbone.json")
    return out


def cell_rows(cell_dir: Path, method: str, seed: int) -> list[dict]:
    import csv

    with open(cell_dir / "eval-test" / "per_image.csv", newline="") as f:
        return [{"method": method, "budget": "b", "seed": seed, **r} for r in csv.DictReader(f)]


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--config", required=True)
    p.add_argument("--profile", default="cpu")
    p.add_argument("--bench", required=True, help="finished benchmark folder (its random and ld cells are reused)")
    p.add_argument("--checkpoints", required=True, help="folder with <name>-s2-<step>.safetensors copies of stage-2 checkpoints")
    p.add_argument("--method", default="ld", help="the benchmark's LD entry whose transfer protocol the curve uses")
    p.add_argument("--steps", type=int, nargs="*", default=[], help="only these total pretraining steps (default: every checkpoint found)")
    p.add_argument("--work", default=str(ROOT / "benchmarks" / "_work" / "gain_vs_steps"))
    p.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "ld_gain_vs_steps"))
    args = p.parse_args()

    import yaml

    from localdisc.runtime.provenance import provenance
    from localdisc.tasks.benchmark import finetune_config, load_benchmark_config, plan
    from localdisc.tasks.evaluate import evaluate
    from localdisc.tasks.stats import compare_to_reference
    from localdisc.train.finetune import finetune

    t0 = time.time()
    cfg = load_benchmark_config(args.config, args.profile)
    bench, work = Path(args.bench), Path(args.work) / cfg.name
    cells = [c for c in plan(cfg, bench) if c.budget == cfg.budgets[0]]
    ld_cells = {c.seed: c for c in cells if c.method.name == args.method}
    rnd_cells = {c.seed: c for c in cells if c.method.name == "random"}
    entry = ld_cells[cfg.seeds[0]].method
    pre = ld_cells[cfg.seeds[0]].pretrain_dir
    stage1_steps = int(yaml.safe_load((pre / "stage1" / "config.yaml").read_text())["steps"])
    total = stage1_steps + int(yaml.safe_load((pre / "config.yaml").read_text())["steps"])
    points = [(stage1_steps, pre / "stage1" / "model.safetensors")]
    for f in sorted(Path(args.checkpoints).glob(f"{cfg.name}-s2-*.safetensors")):
        s2 = int(f.stem.rsplit("-", 1)[1])
        if stage1_steps + s2 < total:
            points.append((stage1_steps + s2, f))
    points = [(n, f) for n, f in points if not args.steps or n in args.steps]
    results = []
    for steps, weights in points:
        run = pseudo_run(weights, pre / "stage1", work / f"ld-{steps}" / "pretrain")  # same network as the final run
        rows = []
        for seed in cfg.seeds:
            cell = work / f"ld-{steps}" / f"s{seed}"
            if not (cell / "eval-test" / "per_image.csv").is_file():
                fcfg = finetune_config(cfg, entry, cfg.budgets[0], seed, cell, run)
                fcfg.overwrite = True
                finetune(fcfg)
                evaluate(cell, split="test", overlays=False, save_predictions=False, device=cfg.device)
            rows += cell_rows(cell, f"ld@{steps}", seed)
        results.append((steps, rows))
        print(f"LD after {steps} steps: fine-tuned {len(cfg.seeds)} seeds", flush=True)
    results.append((total, [r for s, c in ld_cells.items() for r in cell_rows(c.path, args.method, s)]))
    reference = [r for s, c in rnd_cells.items() for r in cell_rows(c.path, "random", s)]

    table = []
    for steps, rows in results:
        (c,) = [c for c in compare_to_reference(reference + rows, ["dice_mean"]) if c["method"] != "random"]
        table.append({"pretrain_steps": steps, "mean_diff": c["mean_diff"], "ci_low": c["ci_low"], "ci_high": c["ci_high"],
                      "p_value": c["p_value"], "n_images": c["n_images"], "n_seeds": c["n_seeds"]})
    prov = provenance(cfg.device)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    record = {"dataset": cfg.name, "profile": args.profile, "method": args.method, "finetune": entry.finetune, "budget": cfg.budgets[0], "seeds": cfg.seeds, "points": table,
              "note": "one LD pretraining run; earlier points are its stage-1 result and saved stage-2 checkpoints; each point is "
                      "fine-tuned with the benchmark's protocol and compared with the benchmark's random-init cells",
              "provenance": prov, "seconds": round(time.time() - t0, 1)}
    out.with_suffix(".json").write_text(json.dumps(record, indent=2))
    lines = [f"# LD minus random init vs pretraining steps ({cfg.name}, {cfg.budgets[0]} labeled image(s), seeds {cfg.seeds})", "",
             f"Transfer protocol: the benchmark's `{args.method}` entry (fine-tuning overrides: {entry.finetune or 'none, the defaults'}).", "",
             "| LD pretraining steps | mean Dice difference | 95% CI | p |", "|---:|---:|---|---:|"]
    lines += [f"| {t['pretrain_steps']} | {t['mean_diff']:+.3f} | [{t['ci_low']:+.3f}, {t['ci_high']:+.3f}] | {t['p_value']:.2g} |" for t in table]
    lines += ["", record["note"] + ".", "", f"Command: `{prov['command']}`", "", f"Commit: `{prov['commit']}`; machine: {prov['machine']['platform']}"]
    out.with_suffix(".md").write_text("\n".join(lines) + "\n")

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 3.4), dpi=120)
    xs = [t["pretrain_steps"] for t in table]
    ax.errorbar(xs, [t["mean_diff"] for t in table], yerr=[[t["mean_diff"] - t["ci_low"] for t in table], [t["ci_high"] - t["mean_diff"] for t in table]],
                fmt="o-", color="#e41a1c", capsize=3)
    ax.axhline(0, color="k", lw=0.8, ls="--")
    ax.set_xlabel("LD pretraining steps")
    ax.set_ylabel("Dice: LD minus random init")
    ax.set_title(f"{cfg.name}, {cfg.budgets[0]} label(s): gain vs compute (95% CI)", fontsize=9)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(out.with_suffix(".png"))
    print(out.with_suffix(".md").read_text())
    return 0


if __name__ == "__main__":
    sys.exit(main())
