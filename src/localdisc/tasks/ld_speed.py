"""Timing one LD training step against the bare network, the heads' floor and the public reference
(what ``benchmarks/ld_speed.py`` runs; see its docstring for the modes).

Every mode runs in a fresh process (``python -m localdisc.tasks.ld_speed --child MODE ...``) so
that its peak RSS is its own; :func:`run_config` interleaves the modes' processes and
:func:`table` renders the result. The reference (github HuaiChen-1994/LDLearning, patched for the
CPU outside this repository) is imported at run time from ``PYTHONPATH`` and never committed.
"""

from __future__ import annotations

import argparse
import hashlib
import importlib
import json
import os
import sys
from pathlib import Path

import torch

from ..methods.ld import LDConfig, LocalDiscrimination
from ..methods.ld.views import make_views
from ..nets import UNet, UNetConfig
from ..runtime import step_profile as SP

REF_SUBDIR = "X-ray code/step1_ld_pretraining"


def reference_step(size, pairs):
    models, batch_average, ref = (importlib.import_module(m) for m in ("models", "BatchAverage", "step2_train_ld"))  # via PYTHONPATH
    encoder, decoder = models.vgg16_bn_tiny(), models.my_models.decoder(channel_list=[128, 128, 64, 32, 16, 32, 16])
    criterion, args = batch_average.BatchCriterion(1, 0.1), {"batch_size": pairs, "region_output_size": (8, 8)}
    inputs = torch.rand(5 * pairs, 1, *size) * 2 - 1  # its views are normalized to [-1, 1]
    flip1, rot1, flip2, rot2 = (torch.randint(n, (pairs,)) for n in (2, 4, 2, 4))
    weight = torch.rand(pairs) * 0.6 + 0.2

    def step():
        patches, regions, assign = decoder(encoder(inputs), args["region_output_size"], if_clustering=True)
        pd, mix = ref.compute_patch_loss(patches, flip1, rot1, flip2, rot2, weight, args, criterion)
        ld, ent = ref.compute_clustering_loss(regions[: 4 * pairs], assign[: 4 * pairs])
        terms = {"pd": pd, "mix": mix, "ld": 10 * ld, "ent": 0.1 * ent}
        encoder.zero_grad(set_to_none=True), decoder.zero_grad(set_to_none=True)
        sum(terms.values()).backward()
        return {k: float(v.detach()) for k, v in terms.items()}

    files = sorted(Path(m.__file__).resolve() for m in (batch_average, ref, models.vgg, models.my_models))
    return step, {"reference_sha256": hashlib.sha256(b"".join(p.read_bytes() for p in files)).hexdigest()[:16]}


def ld_step(mode, size, pairs, shift):
    model = LocalDiscrimination(UNet(UNetConfig(spatial_dims=len(size), in_channels=1)), LDConfig(stage="2", shift=shift)).train()
    images = torch.rand(2 * pairs, 1, *size, generator=torch.Generator().manual_seed(1))
    if mode == "compiled":
        model.backbone.forward_features = torch.compile(model.backbone.forward_features)

    def step():
        if mode in ("ld", "compiled", "profile"):
            loss, logs = model.training_step(images)
        else:
            trunk = model.backbone.forward_features(make_views(images, model.cfg).inputs).trunk
            logs, loss = {}, trunk.mean()
            if mode == "heads":
                loss = loss + model.embed_head(trunk).mean() + model.cluster_head(trunk, rows=4 * pairs).mean()
        model.zero_grad(set_to_none=True)
        loss.backward()
        return logs

    def same_terms_as_loss_terms():  # the fast path against the path the wiring tests pin, same views
        with torch.no_grad():
            torch.manual_seed(100)
            fast = model.training_step(images)[1]
            torch.manual_seed(100)
            spec = {f"loss_{k}": float(v) for k, v in model.loss_terms(model.forward_views(images)).items()}
        return max(abs(fast[k] - spec[k]) for k in spec) if fast.keys() == spec.keys() else None

    return step, same_terms_as_loss_terms


def child(a) -> dict:
    torch.set_num_threads(a.threads)
    if a.keep_freed_memory:
        SP.keep_freed_memory()
    torch.manual_seed(0)
    step, extra = reference_step(a.size, a.pairs) if a.child == "reference" else ld_step(a.child, a.size, a.pairs, a.shift)
    seed = lambda i: torch.manual_seed(100 + i)  # same views in every mode and run
    if a.child == "profile":
        return SP.profile_step(step, "ld/", a.warmup, seed)
    rss_before = SP.peak_rss_mb()
    seconds, logs = SP.time_step(step, a.steps, a.warmup, before=seed)
    out = {"seconds": seconds, "peak_rss_mb": SP.peak_rss_mb(), "rss_before_steps_mb": rss_before, "first_step_terms": logs[0]}
    return {**out, **(extra if a.child == "reference" else {"max_abs_diff_vs_loss_terms": extra()} if a.child == "ld" else {})}


def run_config(args, item: str) -> dict:
    size_text, pairs, *opts = item.split(":")
    size, shift = [int(s) for s in size_text.split("x")], float(dict(o.split("=") for o in opts).get("shift", 0))
    cmd = [sys.executable, "-m", "localdisc.tasks.ld_speed", "--size", *map(str, size), "--pairs", pairs, "--shift", str(shift), "--steps", str(args.steps),
           "--warmup", str(args.warmup), "--threads", str(args.threads)] + (["--keep-freed-memory"] if args.keep_freed_memory else [])
    if args.profile:
        return {"config": item, **SP.run_json_child(cmd + ["--child", "profile"])}
    modes = [m for m in args.modes if m != "reference" or (args.reference and len(size) == 2 and not shift)] + (["compiled"] if args.compile else [])
    env = {"PYTHONPATH": os.pathsep.join(x for x in (str(args.reference), os.environ.get("PYTHONPATH")) if x)}
    jobs = {m: (lambda m=m: SP.run_json_child(cmd + ["--child", m], env=env if m == "reference" else None)) for m in modes}
    runs = SP.interleave(jobs, args.repeats, log=lambda line: SP.log(f"{item} {line}"))
    res = {m: {"seconds_per_step": SP.median_seconds(r), "peak_rss_mb": max((round(x["peak_rss_mb"]) for x in r if "error" not in x), default=None), "runs": r}
           for m, r in runs.items()}
    ratio = lambda a, b, k="seconds_per_step": res[a][k] / res[b][k] if a in res and b in res and res[a][k] and res[b][k] else None
    diffs = [r["max_abs_diff_vs_loss_terms"] for r in runs.get("ld", []) if "error" not in r]
    return {"config": item, "size": size, "pairs": int(pairs), "shift": shift, "modes": res, "ld_over_bare": ratio("ld", "bare"),
            "heads_over_bare": ratio("heads", "bare"), "reference_over_ld": ratio("reference", "ld"),
            "ld_over_reference_memory": ratio("ld", "reference", "peak_rss_mb"), "max_abs_diff_vs_loss_terms": max(diffs) if diffs and None not in diffs else None}


def table(rows) -> list[str]:
    cols = [("ld s/step", "ld", "seconds_per_step"), ("bare s/step", "bare", "seconds_per_step"), ("ld/bare", None, "ld_over_bare"),
            ("heads s/step", "heads", "seconds_per_step"), ("heads/bare", None, "heads_over_bare"), ("reference s/step", "reference", "seconds_per_step"),
            ("reference/ld", None, "reference_over_ld"), ("ld peak RSS MB", "ld", "peak_rss_mb"), ("reference peak RSS MB", "reference", "peak_rss_mb"),
            ("ld/reference memory", None, "ld_over_reference_memory")]
    cell = lambda r, m, k: r[k] if m is None else r["modes"].get(m, {}).get(k)
    diff = lambda r: None if r["max_abs_diff_vs_loss_terms"] is None else f"{r['max_abs_diff_vs_loss_terms']:.1e}"
    return SP.markdown_table(["config", *(c[0] for c in cols), "ld vs loss_terms: max abs diff"], [[r["config"], *(cell(r, m, k) for _, m, k in cols), diff(r)] for r in rows])


def child_parser() -> argparse.ArgumentParser:
    """The options of one timed process (set by :func:`run_config`)."""
    p = argparse.ArgumentParser(description="one timed LD-step process (used by benchmarks/ld_speed.py)")
    p.add_argument("--child", required=True, help="ld | bare | heads | reference | compiled | profile")
    p.add_argument("--size", nargs="+", type=int, required=True)
    p.add_argument("--pairs", type=int, default=1)
    p.add_argument("--shift", type=float, default=0.0)
    p.add_argument("--steps", type=int, default=2)
    p.add_argument("--warmup", type=int, default=1)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--keep-freed-memory", action="store_true")
    return p


__all__ = ["REF_SUBDIR", "reference_step", "ld_step", "child", "run_config", "table", "child_parser"]


if __name__ == "__main__":
    print(json.dumps(child(child_parser().parse_args())))
