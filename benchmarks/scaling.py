"""Pretraining throughput (images/s): processes (torchrun/gloo or nccl), precision, data workers.

Runs `localdisc pretrain` for each configuration in a fresh process (under
``python -m torch.distributed.run --standalone`` when nproc > 1), reads images/s from the
run's metrics.csv (cumulative over the run, so the first step's warm-up is included) beside
the images/s of the training steps alone (data loading, logging and checkpoints left out: the
end-to-end overhead is the ratio), and writes benchmarks/results/NAME.{json,md} with the command, commit and machine
(localdisc.tasks.step_timing.pretrain_throughput).

    python benchmarks/scaling.py --quick                       # CPU smoke test (~1-2 min)
    python benchmarks/scaling.py --device cuda --nproc 1 2 4 --precisions 32 bf16 16-mixed
    python benchmarks/scaling.py --name ld_throughput --methods ld --nproc 1 --precisions 32 --workers 0 1 \
        --data ph2:../shared/data/PH2 --image-size 128 160 --batch-size 4 --norm batch --steps 60   # the PH2 cpu profile
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import torch

from localdisc.runtime.provenance import provenance, write_result
from localdisc.tasks.step_timing import pretrain_throughput, throughput_configs

ROOT = Path(__file__).resolve().parents[1]
METHOD_ARGS = {"ld": ["--stage", "2"], "simclr": []}


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
    p.add_argument("--name", default="scaling", help="result file name (NAME.json, NAME.md)")
    a = p.parse_args(argv)
    if a.quick:
        a.steps, a.batch_size, a.image_size, a.data, a.max_images = 3, 4, [32, 32], "synthetic-fundus:8:64x64", 8
    t0 = time.time()
    options = ["--data", a.data, "--split", "all", "--steps", str(a.steps), "--batch-size", str(a.batch_size), "--image-size", *map(str, a.image_size),
               "--device", a.device, "--norm", a.norm, "--log-every", str(a.steps), "--checkpoint-every", str(10**9), "--picture-every", "0", "--max-images", str(a.max_images)]
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for method, nproc, precision, workers in throughput_configs(a.methods, a.nproc, a.precisions, a.workers):
            out = Path(tmp) / f"{method}-p{nproc}-{precision}-w{workers}"
            rows.append(pretrain_throughput(method, nproc, precision, workers, [*METHOD_ARGS.get(method, []), *options], out, a.threads, a.timeout))
            print(json.dumps(rows[-1]), flush=True)
    setup = {k: getattr(a, k) for k in ("steps", "batch_size", "image_size", "data", "norm", "threads", "quick", "max_images")}
    prov = provenance(a.device, None if argv is None else ["benchmarks/scaling.py", *argv])
    if a.device.startswith("cuda"):
        prov["machine"]["gpus"] = torch.cuda.device_count()
    lines = ["# Pretraining throughput", f"- setup: {json.dumps(setup)}", "",
             "images/s are cumulative over the run (warm-up included); steps alone: the same images over the time inside the training "
             "steps only; end to end / steps alone = the share of the throughput that data loading, logging and checkpoints leave.", "",
             "| method | processes | precision | workers | images/s end to end | images/s steps alone | end to end / steps alone | wall s | note |",
             "|---|---|---|---|---|---|---|---|---|"]
    ratio = lambda r: f"{r['images_per_s'] / r['step_images_per_s']:.3f}" if r.get("step_images_per_s") else "-"  # noqa: E731
    lines += [f"| {r['method']} | {r['nproc']} | {r['precision']} | {r['workers']} | {r.get('images_per_s', '-')} | {r.get('step_images_per_s', '-')} "
              f"| {ratio(r)} | {r['wall_s']} | {r.get('error', '')} |" for r in rows]
    _, md = write_result(a.out, a.name, {"setup": setup, "rows": rows}, lines, prov=prov, wall_s=time.time() - t0)
    print(f"wrote {md}")
    return 1 if any("error" in r for r in rows) else 0


if __name__ == "__main__":
    sys.exit(main())
