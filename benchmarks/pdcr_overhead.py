"""Training-step overhead of PDCR and UAFS (SPEC section 6).

One full supervised step (forward, DiceCE (+ 0.05 * PDCR), backward, Adam) of the default
U-Net through ``train.finetune.Supervised``, on the same fixed inputs, in three modes
(localdisc.tasks.step_timing.pdcr_overhead):

- ``plain``:      U-Net + DiceCE;
- ``pdcr``:       + PDCR on decoder.2 and decoder.3, 64 vectors per image and layer, windows 5/7/9;
- ``pdcr+uafs``:  + UAFS blocks after decoder stages 2 and 3.

All modes start from the same seed (shared layers get identical weights). Repetitions are
interleaved (plain, pdcr, pdcr+uafs, plain, ...) so load changes hit every mode alike; the
report gives the median seconds per step and the ratio to ``plain``.

    python benchmarks/pdcr_overhead.py                 # 2D 2x3x192x256, 3D 2x1x48x64x64
    python benchmarks/pdcr_overhead.py --quick         # smoke test (small sizes, 3 reps)
    python benchmarks/pdcr_overhead.py --device cuda --precision bf16
Writes benchmarks/results/pdcr_overhead.{json,md} (--quick: pdcr_overhead_quick.{json,md}).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

from localdisc.runtime.provenance import write_result
from localdisc.tasks.step_timing import pdcr_overhead
from localdisc.utils import pick_device

ROOT = Path(__file__).resolve().parents[1]


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--configs", nargs="*", default=["2x3x192x256", "2x1x48x64x64"], help="input shapes B x C x spatial (2 or 3 spatial dims)")
    p.add_argument("--classes", type=int, default=3, help="segmentation classes including background")
    p.add_argument("--reps", type=int, default=7, help="timed repetitions per mode (interleaved)")
    p.add_argument("--warmup", type=int, default=2, help="untimed rounds first")
    p.add_argument("--device", default="cpu", help="cpu | cuda | cuda:N")
    p.add_argument("--precision", default="32", help="32 | bf16 | 16-mixed (autocast)")
    p.add_argument("--threads", type=int, default=2, help="CPU threads (torch.set_num_threads)")
    p.add_argument("--quick", action="store_true", help="smoke test: 2x3x64x96 and 1x1x16x32x32, 3 reps")
    p.add_argument("--out", default=str(ROOT / "benchmarks" / "results"), help="folder for pdcr_overhead.json/.md")
    args = p.parse_args(argv)
    if args.quick:
        args.configs, args.reps, args.warmup = ["2x3x64x96", "1x1x16x32x32"], 3, 1
    torch.set_num_threads(args.threads)
    t0 = time.time()
    rows = []
    for item in args.configs:
        rows.append(pdcr_overhead([int(s) for s in item.split("x")], args.classes, args.reps, args.warmup, pick_device(args.device), args.precision))
        print(json.dumps({k: rows[-1][k] for k in ("shape", "median_s", "ratio_to_plain")}), flush=True)

    lines = ["# PDCR / UAFS training-step overhead", f"- precision {args.precision}",
             f"- one step = forward + DiceCE (+ 0.05 PDCR) + backward + Adam; default U-Net; PDCR on decoder.2/3, 64 vectors, windows 5/7/9; "
             f"UAFS after decoder stages 2/3; median of {args.reps} interleaved repetitions after {args.warmup} warm-up round(s)", "",
             "| input (B x C x spatial) | plain s/step | pdcr s/step | pdcr+uafs s/step | pdcr / plain | pdcr+uafs / plain |", "|---|---|---|---|---|---|"]
    for r in rows:
        m, q = r["median_s"], r["ratio_to_plain"]
        lines.append(f"| {'x'.join(map(str, r['shape']))} | {m['plain']:.4f} | {m['pdcr']:.4f} | {m['pdcr+uafs']:.4f} | {q['pdcr']:.3f} | {q['pdcr+uafs']:.3f} |")
    payload = {"reps": args.reps, "warmup": args.warmup, "precision": args.precision, "rows": rows}
    _, md = write_result(args.out, "pdcr_overhead_quick" if args.quick else "pdcr_overhead", payload, lines,  # smoke results never overwrite real ones
                         device=args.device, argv=None if argv is None else ["benchmarks/pdcr_overhead.py", *argv], wall_s=time.time() - t0)
    print(md.read_text())
    return 0


if __name__ == "__main__":
    sys.exit(main())
