"""Pretraining throughput (images/s): processes (torchrun/gloo or nccl), precision, data workers.

Runs `localdisc pretrain` for each configuration in a fresh process (under
``python -m torch.distributed.run --standalone`` when nproc > 1), reads images/s from the
run's metrics.csv (cumulative over the run, so the first step's warm-up is included), and
writes benchmarks/results/scaling.{json,md} with the command, commit and machine.

    python benchmarks/scaling.py --quick                       # CPU smoke test (~1-2 min)
    python benchmarks/scaling.py --device cuda --nproc 1 2 4 --precisions 32 bf16 16-mixed
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from localdisc.runtime.provenance import provenance, provenance_markdown

ROOT = Path(__file__).resolve().parents[1]
METHOD_ARGS = {"ld": ["--stage", "2"], "simclr": []}


def run_one(method: str, nproc: int, precision: str, workers: int, a: argparse.Namespace, tmp: Path) -> dict:
    out = tmp / f"{method}-p{nproc}-{precision}-w{workers}"
    args = ["pretrain", "--method", method, *METHOD_ARGS.get(method, []), "--data", a.data, "--out", str(out), "--split", "all",
            "--steps", str(a.steps), "--batch-size", str(a.batch_size), "--image-size", *map(str, a.image_size),
            "--precision", precision, "--workers", str(workers), "--device", a.device, "--norm", a.norm,
            "--log-every", str(a.steps), "--checkpoint-every", str(10**9), "--picture-every", "0", "--max-images", str(a.max_images)]
    launcher = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc}", "-m", "localdisc.cli.main"] if nproc > 1 else [sys.executable, "-m", "localdisc.cli.main"]
    env = {**os.environ, "OMP_NUM_THREADS": str(a.threads)}
    t0 = time.time()
    res = subprocess.run(launcher + args, capture_output=True, text=True, env=env, timeout=a.timeout)
    row = {"method": method, "nproc": nproc, "precision": precision, "workers": workers, "wall_s": round(time.time() - t0, 1), "command": " ".join(["localdisc" if nproc == 1 else f"torchrun --nproc_per_node {nproc} -m localdisc.cli.main", *args[:-2]])}
    if res.returncode != 0:
        row["error"] = (res.stderr or res.stdout).strip().splitlines()[-1][:300] if (res.stderr or res.stdout).strip() else f"exit {res.returncode}"
        return row
    with (out / "metrics.csv").open() as f:
        last = list(csv.DictReader(f))[-1]
    row.update(images_per_s=round(float(last["images_per_s"]), 2), final_loss=float(last["loss"]))
    return row


def configs(a: argparse.Namespace) -> list[tuple[str, int, str, int]]:
    """Every method at each nproc (fp32, 0 workers), plus precision and worker variants at nproc=1."""
    rows = []
    for m in a.methods:
        rows += [(m, n, "32", 0) for n in a.nproc]
        rows += [(m, 1, p, 0) for p in a.precisions if p != "32"]
        rows += [(m, 1, "32", w) for w in a.workers if w != 0]
    return rows


def to_markdown(result: dict) -> str:
    lines = ["# Pretraining scaling", "", *(f"- {line}" for line in provenance_markdown(result, result["wall_s"])),
             f"- setup: {json.dumps(result['setup'])}", "", "images/s are cumulative over the run (warm-up included).", "",
             "| method | processes | precision | workers | images/s | wall s | note |", "|---|---|---|---|---|---|---|"]
    for r in result["rows"]:
        lines.append(f"| {r['method']} | {r['nproc']} | {r['precision']} | {r['workers']} | {r.get('images_per_s', '-')} | {r['wall_s']} | {r.get('error', '')} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true", help="tiny smoke run on CPU (few steps, 32x32, small batch)")
    p.add_argument("--device", default="cpu", help="cpu | cuda | auto")
    p.add_argument("--nproc", type=int, nargs="+", default=[1, 2], help="process counts to compare")
    p.add_argument("--methods", nargs="+", default=["ld", "simclr"])
    p.add_argument("--precisions", nargs="+", default=["32", "bf16"], help="32 | bf16 | 16-mixed (GradScaler on CUDA)")
    p.add_argument("--workers", type=int, nargs="+", default=[0, 2], help="data-loading worker counts to compare")
    p.add_argument("--data", default="synthetic-fundus:16:64x64")
    p.add_argument("--max-images", type=int, default=16)
    p.add_argument("--steps", type=int, default=30)
    p.add_argument("--batch-size", type=int, default=8, help="global batch (divisible by every --nproc)")
    p.add_argument("--image-size", type=int, nargs="+", default=[64, 64])
    p.add_argument("--norm", default="group", help="group keeps processes equivalent on CPU (no SyncBatchNorm with gloo)")
    p.add_argument("--threads", type=int, default=1, help="OMP threads per process")
    p.add_argument("--timeout", type=int, default=1800)
    p.add_argument("--out", default=str(ROOT / "benchmarks" / "results"))
    a = p.parse_args(argv)
    if a.quick:
        a.steps, a.batch_size, a.image_size, a.data, a.max_images = 3, 4, [32, 32], "synthetic-fundus:8:64x64", 8
    t0 = time.time()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for cfg in configs(a):
            row = run_one(*cfg, a, Path(tmp))
            print(json.dumps(row), flush=True)
            rows.append(row)
    setup = {k: getattr(a, k) for k in ("steps", "batch_size", "image_size", "data", "norm", "threads", "quick")}
    prov = provenance(a.device, None if argv is None else ["benchmarks/scaling.py", *argv])
    if a.device.startswith("cuda"):
        import torch

        prov["machine"]["gpus"] = torch.cuda.device_count()
    result = {**prov, "wall_s": round(time.time() - t0, 1), "setup": setup, "rows": rows}
    out = Path(a.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "scaling.json").write_text(json.dumps(result, indent=2))
    (out / "scaling.md").write_text(to_markdown(result))
    print(f"wrote {out / 'scaling.md'}")
    return 1 if any("error" in r for r in rows) else 0


if __name__ == "__main__":
    sys.exit(main())
