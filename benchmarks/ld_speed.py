"""LD training-step time and peak memory against the bare network, the heads' floor and the public reference.

Each mode runs in a FRESH process (peak RSS per mode), the modes round-robin --repeats times; s/step
is the median of all timed steps. ld: training_step (stage 2) + backward, and a check that its terms
equal loss_terms(forward_views()) (the path the wiring tests pin); bare: the same 5B views through the
U-Net, backward of trunk.mean(); heads: bare + both LD heads (the floor of any LD step with the spec's
heads); reference (--reference PATH, 2D, no shift): github HuaiChen-1994/LDLearning "X-ray code/step1_ld_pretraining",
patched for the CPU outside this repository (.cuda() dropped, cv2/torchvision imports of
step2_train_ld.py commented out), imported at run time: vgg16_bn_tiny + decoder, compute_patch_loss,
compute_clustering_loss, summed as its training loop, on 5B prepared inputs (its DataLoader views are
not timed, which favours it); compiled (--compile): ld with torch.compile on the U-Net.
--profile: one profiled LD step per config instead (time and memory per phase).

    python benchmarks/ld_speed.py --reference /tmp/ldref      # configs: SIZE:PAIRS[:shift=F]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from localdisc.runtime import step_profile as SP
from localdisc.runtime.provenance import provenance, write_result
from localdisc.tasks.ld_speed import REF_SUBDIR, run_config, table

ROOT = Path(__file__).resolve().parents[1]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--configs", nargs="*", default=["224x224:2", "448x448:1", "224x224:2:shift=0.25", "48x48x48:1"], help="SIZE:PAIRS[:shift=F] items")
    p.add_argument("--reference", type=Path, default=None, help="the public reference: a checkout, or its step1_ld_pretraining folder")
    p.add_argument("--modes", nargs="*", default=["ld", "bare", "heads", "reference"], help="modes to time (reference: with --reference, 2D, no shift)")
    p.add_argument("--steps", type=int, default=2, help="timed steps per process")
    p.add_argument("--warmup", type=int, default=1, help="untimed steps first")
    p.add_argument("--repeats", type=int, default=2, help="processes per mode, round-robin over the modes")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--keep-freed-memory", action="store_true", help="every process keeps freed memory (step_profile.keep_freed_memory); suffix _keep")
    p.add_argument("--compile", action="store_true", help="also time the LD step with torch.compile on the U-Net")
    p.add_argument("--profile", action="store_true", help="one profiled LD step per config instead: ld_speed_profile.{json,md}")
    p.add_argument("--quick", action="store_true", help="smoke test: tiny 2D, 2D with shift, 3D; 1 timed step, 1 repeat")
    p.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results")
    args = p.parse_args(argv)
    if args.reference is not None and (args.reference / REF_SUBDIR).is_dir():
        args.reference = args.reference / REF_SUBDIR
    args.reference = args.reference.resolve() if args.reference else None
    if args.quick:
        args.configs, args.steps, args.repeats = ["64x64:1", "64x64:1:shift=0.25", "16x16x16:1"], 1, 1
    t0 = time.time()
    rows = [run_config(args, item) for item in args.configs]
    given = ["benchmarks/ld_speed.py", *argv] if argv is not None else sys.argv
    shown = [("PATH" if prev in ("--reference", "--out") else x) for prev, x in zip(["", *given[:-1]], given)]
    prov = provenance("cpu", shown)  # no machine paths in committed results
    meta = {**prov, "wall_s": round(time.time() - t0, 1), **{k: getattr(args, k) for k in ("threads", "steps", "warmup", "repeats", "keep_freed_memory")}}
    name = "ld_speed" + "_profile" * args.profile + "_keep" * args.keep_freed_memory + "_quick" * args.quick
    setup = (f"- {args.threads} torch thread(s); {args.warmup} warm-up + {args.steps} timed step(s) per process, {args.repeats} process(es) per mode round-robin; "
             f"forward + backward, no optimizer; stage 2, default U-Net; glibc malloc {'keeps freed memory' if args.keep_freed_memory else 'default'}")
    lines = ["# LD step: time and memory" + " per phase (one profiled step)" * args.profile, setup, ""]
    lines += [x for r in rows for x in SP.profile_markdown(r, r["config"])] if args.profile else table(rows)
    _, md = write_result(args.out, name, {**{k: v for k, v in meta.items() if k not in prov}, "rows": rows}, lines, prov=prov, wall_s=meta["wall_s"])
    print(md.read_text())
    failed = [r for r in rows if "error" in r] + [x for r in rows for m in r.get("modes", {}).values() for x in m["runs"] if "error" in x]
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
