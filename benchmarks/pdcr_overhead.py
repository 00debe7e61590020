"""Training-step overhead of PDCR and UAFS (SPEC section 6).

One full supervised step (forward, DiceCE (+ 0.05 * PDCR), backward, Adam) of the default
U-Net through ``train.finetune.Supervised``, on the same fixed inputs, in three modes:

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
import statistics
import sys
import time
from pathlib import Path

import torch

from localdisc.runtime.provenance import provenance, provenance_markdown

ROOT = Path(__file__).resolve().parents[1]
MODES = ("plain", "pdcr", "pdcr+uafs")


def build(mode: str, spatial_dims: int, in_channels: int, num_classes: int, device: torch.device):
    from localdisc.losses.pdcr import PDCRLoss
    from localdisc.nets import UNet, UNetConfig
    from localdisc.train.finetune import Supervised

    torch.manual_seed(0)
    cfg = UNetConfig(spatial_dims=spatial_dims, in_channels=in_channels, uafs_stages=(2, 3) if mode == "pdcr+uafs" else ())
    unet = UNet(cfg, out_channels=num_classes)
    pdcr = None if mode == "plain" else PDCRLoss(cfg, num_classes, layers=("decoder.2", "decoder.3"), vectors_per_layer=64, windows=(5, 7, 9), tau=0.1)
    model = Supervised(unet, pdcr, 0.05 if pdcr is not None else 0.0).to(device).train()
    return model, torch.optim.Adam(model.parameters(), lr=1e-3)


def run_config(shape: list[int], classes: int, reps: int, warmup: int, device: torch.device, precision: str) -> dict:
    batch, channels, *spatial = shape
    g = torch.Generator().manual_seed(1)
    x = torch.rand(batch, channels, *spatial, generator=g).to(device)
    y = torch.randint(0, classes, (batch, *spatial), generator=g).to(device)
    models = {m: build(m, len(spatial), channels, classes, device) for m in MODES}
    dtype = {"bf16": torch.bfloat16, "16-mixed": torch.float16}.get(precision)

    def step(mode: str) -> float:
        model, opt = models[mode]
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        t0 = time.perf_counter()
        with torch.autocast(device.type, dtype=dtype, enabled=dtype is not None):
            loss, _ = model(x, y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        return time.perf_counter() - t0

    times: dict[str, list[float]] = {m: [] for m in MODES}
    for rep in range(warmup + reps):
        for mode in MODES:  # interleaved
            dt = step(mode)
            if rep >= warmup:
                times[mode].append(dt)
    median = {m: statistics.median(t) for m, t in times.items()}
    return {
        "shape": shape,
        "classes": classes,
        "median_s": median,
        "ratio_to_plain": {m: median[m] / median["plain"] for m in MODES},
        "times_s": times,
    }


def main() -> int:
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
    args = p.parse_args()
    if args.quick:
        args.configs, args.reps, args.warmup = ["2x3x64x96", "1x1x16x32x32"], 3, 1
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    t0 = time.time()

    rows = []
    for item in args.configs:
        shape = [int(s) for s in item.split("x")]
        rows.append(run_config(shape, args.classes, args.reps, args.warmup, device, args.precision))
        print(json.dumps({k: rows[-1][k] for k in ("shape", "median_s", "ratio_to_plain")}), flush=True)

    prov = provenance(args.device)
    meta = {
        **prov,
        "wall_s": round(time.time() - t0, 1),
        "reps": args.reps,
        "warmup": args.warmup,
        "precision": args.precision,
    }
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    suffix = "_quick" if args.quick else ""  # smoke results never overwrite real ones
    (out / f"pdcr_overhead{suffix}.json").write_text(json.dumps({**meta, "rows": rows}, indent=2))
    lines = [
        "# PDCR / UAFS training-step overhead", "",
        *(f"- {line}" for line in provenance_markdown(prov, meta["wall_s"])),
        f"- precision {args.precision}",
        f"- one step = forward + DiceCE (+ 0.05 PDCR) + backward + Adam; default U-Net; PDCR on decoder.2/3, 64 vectors, windows 5/7/9; "
        f"UAFS after decoder stages 2/3; median of {args.reps} interleaved repetitions after {args.warmup} warm-up round(s)", "",
        "| input (B x C x spatial) | plain s/step | pdcr s/step | pdcr+uafs s/step | pdcr / plain | pdcr+uafs / plain |",
        "|---|---|---|---|---|---|",
    ]
    for r in rows:
        m, q = r["median_s"], r["ratio_to_plain"]
        lines.append(f"| {'x'.join(map(str, r['shape']))} | {m['plain']:.4f} | {m['pdcr']:.4f} | {m['pdcr+uafs']:.4f} | {q['pdcr']:.3f} | {q['pdcr+uafs']:.3f} |")
    (out / f"pdcr_overhead{suffix}.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
