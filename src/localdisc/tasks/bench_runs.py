"""What the benchmark scripts (``benchmarks/``) share: run-size options, the runs they train, scores.

- :func:`add_pretrain_args` / :func:`pretrain_config`: the run-size options of the scripts that
  train their own pretraining run when none is given (cluster_cxr, discover_vessels,
  discover_lungs, landmarks) and the :class:`PretrainConfig` they make, so those runs are sized
  and logged alike: the learning rate halved at mid-run, about 20 rows of metrics;
- :func:`apply_quick`: the tiny network and step counts of every script's ``--quick`` smoke run;
- :func:`pretrain_once`: a run trained unless a finished one is in its folder (benchmarks rerun);
- :func:`finetune_and_evaluate`: fine-tune, then score on the test split at original resolution;
- :func:`class_scores` / :func:`mean_sd_by_class`: per-class means from an evaluation summary, and
  their mean and SD over seeds;
- :func:`use_cpus`, :func:`images_own_size`: threads this process may use, an image's stored size;
- :func:`retina_check`: a few LD steps on the real, unlabeled photograph ``skimage.data.retina()``.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from pathlib import Path
from typing import Any, Sequence

import torch
from PIL import Image

from ..data.records import load_sample_image
from ..data.sources import resolve_source
from ..methods.ld import LDConfig
from ..train.finetune import FinetuneConfig, finetune
from ..train.pretrain import PretrainConfig, run_pretraining
from .evaluate import evaluate
from .shape_scores import retina_photograph

# --quick: a network and step counts that run in seconds on a CPU (numbers meaningless)
QUICK = dict(pretrain_steps=4, image_size=[64, 64], batch_size=2, encoder_channels=[4, 8, 8], decoder_channels=[8, 4], grid=2)


def add_pretrain_args(p: argparse.ArgumentParser) -> None:
    """--pretrain-steps, --batch-size, --image-size, --encoder/decoder-channels, --grid."""
    p.add_argument("--pretrain-steps", type=int, default=3000)
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--image-size", type=int, nargs=2, default=[256, 256])
    p.add_argument("--encoder-channels", type=int, nargs="+", default=[16, 32, 64, 128, 128])
    p.add_argument("--decoder-channels", type=int, nargs="+", default=[128, 64, 32, 32])
    p.add_argument("--grid", type=int, default=8)


def apply_quick(args: argparse.Namespace, **more: Any) -> argparse.Namespace:
    """The options of :func:`add_pretrain_args` set to :data:`QUICK`, then ``more``; ``--work``
    gets a ``_quick`` suffix so a smoke run never reuses or replaces a real one's runs."""
    for key, value in {**QUICK, **more}.items():
        setattr(args, key, value)
    if getattr(args, "work", None):
        args.work = str(args.work) + "_quick"
    return args


def pretrain_config(args: argparse.Namespace, data: str, out: Path, steps: int | None = None, **overrides: Any) -> PretrainConfig:
    """PretrainConfig on the train split from the options above; lr halved at mid-run, ~20 log rows."""
    steps = args.pretrain_steps if steps is None else steps
    settings = dict(data=data, out=str(out), split="train", steps=steps, batch_size=args.batch_size, image_size=tuple(args.image_size),
                    encoder_channels=tuple(args.encoder_channels), decoder_channels=tuple(args.decoder_channels),
                    lr_halve_every=max(1, steps // 2), picture_every=0, log_every=max(1, steps // 20), overwrite=True, device=args.device)
    return PretrainConfig(**{**settings, **overrides})


def pretrain_once(cfg: PretrainConfig, method_cfg: Any) -> Path:
    """``cfg.out`` when it holds a finished run (model.safetensors), else the run trained now."""
    out = Path(cfg.out)
    return out if (out / "model.safetensors").is_file() else run_pretraining(cfg, method_cfg)


def finetune_and_evaluate(cfg: FinetuneConfig, **evaluate_kw: Any) -> dict[str, Any]:
    """Fine-tune with ``cfg``, then :func:`~localdisc.tasks.evaluate.evaluate` the run on the test
    split (``evaluate_kw``: e.g. overlays=False). Returns {run, summary, train_s, total_s}."""
    t0 = time.time()
    run = finetune(cfg)
    train_s = time.time() - t0
    summary = evaluate(run, split="test", device=cfg.device, **evaluate_kw)
    return {"run": run, "summary": summary, "train_s": round(train_s, 1), "total_s": round(time.time() - t0, 1)}


def class_scores(summary: dict[str, Any], keys: Sequence[str] = ("dice",)) -> dict[str, dict[str, dict[str, Any]]]:
    """{class: {metric: {mean, std, n}}} for the foreground classes of an evaluation summary."""
    m = summary["metrics"]
    return {c: {k: {s: m[f"{k}_{c}"][s] for s in ("mean", "std", "n")} for k in keys} for c in summary["class_names"][1:]}


def mean_sd_by_class(rows: Sequence[dict[str, float]]) -> dict[str, dict[str, float]]:
    """Rows {class: score} (one per seed) -> {class: {mean, std (population), n}}."""
    return {c: {"mean": statistics.fmean(r[c] for r in rows), "std": statistics.pstdev([r[c] for r in rows]) if len(rows) > 1 else 0.0, "n": len(rows)}
            for c in rows[0]}


def usable_cpus() -> int:
    """CPUs this process may run on (respects taskset and cpusets, unlike os.cpu_count())."""
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def use_cpus(limit: int = 8) -> int:
    """torch threads = the usable CPUs, at most ``limit`` (beyond that, threads mostly wait)."""
    torch.set_num_threads(min(limit, usable_cpus()))
    return torch.get_num_threads()


def images_own_size(data: str) -> list[int]:
    """Stored size of the first image of a data source (before any training resize)."""
    return list(load_sample_image(resolve_source(data)[0]).shape[1:])


def retina_check(work: Path, steps: int, **network: Any) -> dict[str, Any]:
    """LD (stage 1 for half the steps, then 2) on the photograph alone, written as work/retina/retina.png;
    ``network``: PretrainConfig fields (image_size, channel widths, device). The last metrics row."""
    folder = work / "retina"
    folder.mkdir(parents=True, exist_ok=True)
    image, _ = retina_photograph()
    Image.fromarray((image.transpose(1, 2, 0) * 255).round().astype("uint8")).save(folder / "retina.png")
    grid = network.pop("grid", 8)
    t0 = time.time()
    out = work / "retina_ld"
    cfg = PretrainConfig(data=str(folder), out=str(out), steps=steps, batch_size=2, log_every=1, picture_every=0, overwrite=True, **network)
    run_pretraining(cfg, LDConfig(stage="both", stage1_steps=max(1, steps // 2), grid=grid))
    rows = (out / "metrics.csv").read_text().splitlines()
    return {"run": str(out), "steps": steps, "wall_s": time.time() - t0, "metrics_header": rows[0], "last_row": rows[-1], "picture": str(out / "pictures" / "embeddings.png")}
