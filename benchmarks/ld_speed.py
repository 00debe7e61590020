"""LD training-step speed and peak memory: this implementation vs a naive one vs the bare network.

For each configuration (view size, B samples = 2B loop images = 5B network images), three
modes run in a FRESH subprocess each (so peak RSS is per mode, via resource.getrusage):

- ``ld``:    LocalDiscrimination stage 2 (all loss terms), region embeddings by one matmul;
- ``naive``: identical, but region embeddings materialize the broadcast (n, K, D, *S) tensor
             as the reference code does;
- ``bare``:  the same 5B views through the U-Net trunk, forward + backward of trunk.mean();
- ``compiled`` (with --compile): ``ld`` with the U-Net's forward compiled by ``torch.compile``
             (inductor; the first, untimed steps pay for the compilation).

All three start from the same seed and weights, so the first-step loss terms of ``ld`` and
``naive`` must agree (checked). Reports images/s (loop images, i.e. 2B per step), network
images/s (5B per step), peak RSS (CPU) or peak allocated (CUDA), and the ld/bare time ratio.

    python benchmarks/ld_speed.py                  # 224^2 B=2 and 448^2 B=1
    python benchmarks/ld_speed.py --quick          # smoke test (tiny sizes)
Writes benchmarks/results/ld_speed.{json,md} (--quick: ld_speed_quick.{json,md}).
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def _naive_method():
    import torch.nn.functional as F

    from localdisc.losses import ld as L
    from localdisc.methods.ld import LocalDiscrimination

    class NaiveLD(LocalDiscrimination):
        def loss_terms(self, outputs):
            real = L.region_embeddings
            try:  # the reference's broadcast: (n, K, 1, *S) * (n, 1, D, *S) -> (n, K, D, *S)
                L.region_embeddings = lambda a, v: F.normalize((a[:, :, None] * v[:, None]).flatten(3).mean(-1), dim=-1)
                return super().loss_terms(outputs)
            finally:
                L.region_embeddings = real

    return NaiveLD


def child(mode: str, size: list[int], pairs: int, steps: int, warmup: int, device: str, threads: int) -> dict:
    import torch

    from localdisc.methods.ld import LDConfig, LocalDiscrimination
    from localdisc.methods.ld.views import make_views
    from localdisc.nets import UNet, UNetConfig

    torch.set_num_threads(threads)
    dev = torch.device(device)
    torch.manual_seed(0)
    cls = _naive_method() if mode == "naive" else LocalDiscrimination
    model = cls(UNet(UNetConfig(spatial_dims=len(size), in_channels=1)), LDConfig(stage="2")).to(dev).train()
    if mode == "compiled":
        model.backbone.forward_features = torch.compile(model.backbone.forward_features)
    g = torch.Generator().manual_seed(1)
    images = torch.rand(2 * pairs, 1, *size, generator=g).to(dev)
    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    if dev.type == "cuda":
        torch.cuda.reset_peak_memory_stats(dev)

    def step():
        if mode == "bare":
            views = make_views(images, model.cfg)
            trunk = model.backbone.forward_features(views.inputs).trunk
            loss, terms = trunk.mean(), {}
        else:
            terms = model.loss_terms(model.forward_views(images))
            loss = sum(terms.values())
        model.zero_grad(set_to_none=True)
        loss.backward()
        return {k: float(v.detach()) for k, v in terms.items()}

    first = None
    for i in range(warmup + steps):
        if i == warmup:
            if dev.type == "cuda":
                torch.cuda.synchronize(dev)
            t0 = time.perf_counter()
        torch.manual_seed(100 + i)  # same views in every mode
        terms = step()
        first = terms if first is None else first
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)
    dt = (time.perf_counter() - t0) / steps
    out = {
        "mode": mode,
        "size": size,
        "pairs": pairs,
        "seconds_per_step": dt,
        "images_per_s": 2 * pairs / dt,
        "network_images_per_s": 5 * pairs / dt,
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "rss_before_steps_mb": rss_before,
        "first_step_terms": first,
    }
    if dev.type == "cuda":
        out["peak_cuda_allocated_mb"] = torch.cuda.max_memory_allocated(dev) / 2**20
    return out


def _spawn(args, mode: str, size: list[int], pairs: int) -> dict:
    cmd = [sys.executable, __file__, "--child", mode, "--size", *map(str, size), "--pairs", str(pairs), "--steps", str(args.steps), "--warmup", str(args.warmup), "--device", args.device, "--threads", str(args.threads)]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        return {"mode": mode, "size": size, "pairs": pairs, "error": proc.stderr.strip().splitlines()[-1] if proc.stderr.strip() else f"exit {proc.returncode}"}
    return json.loads(proc.stdout.strip().splitlines()[-1])


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--configs", nargs="*", default=["224x224:2", "448x448:1"], help="SIZE:PAIRS items, e.g. 224x224:2 (B=2 pairs = 4 loop images = 10 network images)")
    p.add_argument("--steps", type=int, default=3, help="timed steps per mode")
    p.add_argument("--warmup", type=int, default=1, help="untimed steps first")
    p.add_argument("--device", default="cpu")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--compile", action="store_true", help="also time the LD step with torch.compile on the U-Net")
    p.add_argument("--quick", action="store_true", help="smoke test: 64x64:1 and 96x96:1, 1 timed step")
    p.add_argument("--out", default=str(ROOT / "benchmarks" / "results"), help="folder for ld_speed.json/.md")
    p.add_argument("--child", default=None, help=argparse.SUPPRESS)
    p.add_argument("--size", nargs="*", type=int, default=None, help=argparse.SUPPRESS)
    p.add_argument("--pairs", type=int, default=1, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.child:
        print(json.dumps(child(args.child, args.size, args.pairs, args.steps, args.warmup, args.device, args.threads)))
        return 0
    if args.quick:
        args.configs, args.steps, args.warmup = ["64x64:1", "96x96:1"], 1, 1
    t0 = time.time()

    rows = []
    for item in args.configs:
        size_text, _, pairs = item.partition(":")
        size, pairs = [int(s) for s in size_text.split("x")], int(pairs or 1)
        res = {m: _spawn(args, m, size, pairs) for m in ("ld", "naive", "bare", *(("compiled",) if args.compile else ()))}
        ld, naive, bare = res["ld"], res["naive"], res["bare"]
        ok = "error" not in ld and "error" not in naive
        same = ok and all(abs(ld["first_step_terms"][k] - naive["first_step_terms"][k]) <= 1e-4 * max(1.0, abs(ld["first_step_terms"][k])) for k in ld["first_step_terms"])
        rows.append({
            "config": item, "results": res, "losses_identical": same,
            "ld_over_bare_time": ld["seconds_per_step"] / bare["seconds_per_step"] if ok and "error" not in bare else None,
            "naive_over_ld_time": naive["seconds_per_step"] / ld["seconds_per_step"] if ok else None,
            "ld_over_compiled_time": ld["seconds_per_step"] / res["compiled"]["seconds_per_step"] if ok and "error" not in res.get("compiled", {"error": 1}) else None,
        })
        print(json.dumps(rows[-1]), flush=True)

    from localdisc.runtime.provenance import provenance, provenance_markdown

    prov = provenance(args.device)
    meta = {
        **prov,
        "wall_s": round(time.time() - t0, 1),
        "threads": args.threads,  # per child process; machine.torch_threads is the parent's
        "steps": args.steps,
        "warmup": args.warmup,
    }
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    suffix = "_quick" if args.quick else ""  # smoke results never overwrite real ones
    (out / f"ld_speed{suffix}.json").write_text(json.dumps({**meta, "rows": rows}, indent=2))
    mem_key = "peak_cuda_allocated_mb" if args.device.startswith("cuda") else "peak_rss_mb"
    lines = [
        "# LD step speed and memory", "",
        *(f"- {line}" for line in provenance_markdown(prov, meta["wall_s"])),
        f"- {args.threads} torch thread(s) per mode process",
        f"- {args.steps} timed step(s) after {args.warmup} warm-up; forward + backward (no optimizer); stage 2 (all terms); default U-Net; B pairs = 2B loop images = 5B network images", "",
        f"| config | mode | s/step | images/s | network images/s | {mem_key} | ld/bare time | naive/ld time | losses identical |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        for m, res in r["results"].items():
            if "error" in res:
                lines.append(f"| {r['config']} | {m} | error: {res['error']} | | | | | | |")
                continue
            lines.append(f"| {r['config']} | {m} | {res['seconds_per_step']:.3f} | {res['images_per_s']:.2f} | {res['network_images_per_s']:.2f} | {res.get(mem_key, 0):.0f} | "
                         + (f"{r['ld_over_bare_time']:.2f} | {r['naive_over_ld_time']:.2f} | {r['losses_identical']} |" if m == "ld" and r["ld_over_bare_time"] else " | | |"))
    for r in rows:
        if r.get("ld_over_compiled_time"):
            lines.append(f"\n{r['config']}: torch.compile speed-up of the LD step (ld time / compiled time): {r['ld_over_compiled_time']:.2f}x")
    (out / f"ld_speed{suffix}.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0 if all(r["losses_identical"] for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
