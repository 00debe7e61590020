"""Transfer benchmark (docs/method.md): methods x label budgets x seeds, honestly.

``run_benchmark(cfg, out)`` runs, for every seed:
  1. pretraining once per (pretraining method, seed) on the TRAIN split images only, cached in
     ``OUT/pretrain/<key>-s<seed>/`` and reused by every method entry that shares it;
  2. fine-tuning per (method, budget, seed) in ``OUT/finetune/<method>/b<budget>-s<seed>/``
     with the same seed, split (``split_seed``), validation carve and fine-tuning budget
     (steps, batch size, image size) for every method; random init is always the reference;
  3. evaluation of the validation-selected checkpoint on the test split (per-image CSV).
A cell is finished when its ``summary.json`` exists (written atomically, last); a stopped
benchmark resumes its unfinished pretraining/fine-tuning runs from their checkpoints and never
redoes finished cells. A cached cell made with other settings is an error, not silently reused.

This module is the runner. The config format (:func:`load_benchmark_config`, documented in
``configs/synthetic.yaml``) lives in :mod:`localdisc.tasks.benchmark_config`; ``write_outputs``
(results.csv, per_image.csv, comparisons.csv, results.md, dice_vs_labels.png, report.html) lives
in :mod:`localdisc.report.benchmark_report`. Both are re-exported here.
"""

from __future__ import annotations

import json
import shutil
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import yaml

from ..config import build_config, to_dict
from ..data.sources import resolve_source
from ..errors import ConfigError
from ..methods import METHODS, get_method
from ..report.benchmark_report import aggregate, collect, result_rows, write_outputs
from ..runtime.checkpoint import atomic_write_text
from ..runtime.outputs import claim
from ..train.finetune import finetune
from ..train.finetune_data import assigned_splits
from ..train.pretrain import run_pretraining
from .benchmark_config import (
    FINETUNE_PROTOCOL,
    NOT_FINGERPRINTED,
    PRETRAIN_PROTOCOL,
    TOP_KEYS,
    BenchmarkConfig,
    MethodEntry,
    _plain,
    _settings,
    budget_label,
    effective_settings,
    finetune_config,
    fingerprint,
    load_benchmark_config,
    pretrain_config,
)
from .evaluate import evaluate

# ---------------------------------------------------------------- plan


@dataclass
class Cell:
    method: MethodEntry
    budget: Any
    seed: int
    path: Path
    pretrain_dir: Path | None
    pretrain_seed: int = 0

    @property
    def done(self) -> bool:
        return (self.path / "summary.json").is_file()


def plan(cfg: BenchmarkConfig, out: Path) -> list[Cell]:
    cells = []
    for seed in cfg.seeds:
        pseed = seed if cfg.pretrain_seed is None else cfg.pretrain_seed
        for entry in cfg.methods:
            pre = out / "pretrain" / f"{entry.pretrain_key}-s{pseed}" if entry.pretrain else None
            for b in cfg.budgets:
                cells.append(Cell(entry, b, seed, out / "finetune" / entry.name / f"b{budget_label(b)}-s{seed}", pre, pseed))
    return cells


def _pretrain_data(cfg: BenchmarkConfig, out: Path, write: bool = True) -> str:
    """The data spec pretraining reads. When every sample has a split, the spec itself with
    split=train; otherwise a manifest of exactly the images fine-tuning will treat as train
    (so unassigned images that become test are never seen during pretraining)."""

    samples = resolve_source(cfg.data, seed=cfg.split_seed)
    if all(s.split is not None for s in samples):
        return cfg.data
    train = [s for s in assigned_splits(samples, cfg.split_seed, cfg.test_fraction) if s.split == "train"]
    path = out / "pretrain" / "train_images.csv"
    if write:
        lines = ["id,image,split"] + [f"{s.id},{Path(s.image).resolve()},train" for s in train]
        atomic_write_text(path, "\n".join(lines) + "\n")
    return str(path)


def _check_marker(marker: Path, settings: dict[str, Any]) -> None:
    """Refuse a cached run made with other settings. A key that only one side has (an option
    added to localdisc after the run was made) counts as that option's default, so a new
    option left at its default does not invalidate finished runs."""
    saved = effective_settings(json.loads(marker.read_text()).get("settings", {}))
    defaults = settings.get("_defaults", {})
    now = {k: v for k, v in settings.items() if k != "_defaults"}
    value = lambda d, k: d[k] if k in d else defaults.get(k, d.get(k))  # noqa: E731
    diff = sorted(k for k in (set(saved) | set(now)) - {"_defaults"} if json.dumps(value(saved, k), default=str) != json.dumps(value(now, k), default=str))
    if diff:
        raise ConfigError(f"{marker.parent}: cached run was made with other settings ({', '.join(diff)}); "
                          "use another --out or delete that folder to recompute it")


def _prune_checkpoints(run_dir: Path) -> None:
    """Drop the resume checkpoints (weights + optimizer state) of a FINISHED run; the final and
    best weights stay. Saves ~2/3 of the disk space of a benchmark."""

    for ckpt in sorted(run_dir.glob("**/ckpt-*")):
        if ckpt.is_dir() and ckpt.name[5:].isdigit():
            shutil.rmtree(ckpt)
    for pointer in run_dir.glob("**/latest.json"):
        pointer.unlink()


def _claim(run_dir: Path, settings: dict[str, Any]) -> None:
    """Record the settings before training, so that resuming a stopped run with changed
    settings is refused instead of mixing two configurations in one run."""

    started = run_dir / "benchmark_settings.json"
    if started.is_file():
        _check_marker(started, settings)
    else:
        run_dir.mkdir(parents=True, exist_ok=True)
        claim(run_dir, "benchmark-cell")  # the run that trains here finds a folder localdisc made
        atomic_write_text(started, json.dumps({"settings": _recorded(settings)}, indent=2, default=str))


def _recorded(settings: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in settings.items() if k != "_defaults"}


# ---------------------------------------------------------------- run


@dataclass
class BenchmarkResult:
    out: Path
    cells: list[Cell]
    pretrained: list[str] = field(default_factory=list)  # runs trained (or resumed) in this call
    finetuned: list[str] = field(default_factory=list)
    evaluated: list[str] = field(default_factory=list)
    reused: list[str] = field(default_factory=list)  # finished cells and pretraining runs reused


def ensure_pretrained(cfg: BenchmarkConfig, entry: MethodEntry, seed: int, run_dir: Path, data: str, result: BenchmarkResult) -> Path:
    method_cls = get_method(entry.pretrain)
    mcfg = build_config(method_cls.Config, entry.method)
    pcfg = pretrain_config(cfg, entry, seed, run_dir, data)
    settings = _settings(pcfg, {"method_config": to_dict(mcfg)})
    settings["data"] = cfg.data  # the manifest path (if any) depends on --out
    marker = run_dir / "pretrain_done.json"
    if marker.is_file():
        _check_marker(marker, settings)
        if str(run_dir) not in result.pretrained + result.reused:
            result.reused.append(str(run_dir))
        return run_dir
    _claim(run_dir, settings)
    pcfg = replace(pcfg, resume=True)  # an interrupted run continues from its checkpoint
    print(f"pretraining {entry.pretrain} (seed {seed}) -> {run_dir}", flush=True)
    t0 = time.time()
    run_pretraining(pcfg, mcfg)
    atomic_write_text(marker, json.dumps({"settings": _recorded(settings), "seconds": round(time.time() - t0, 1)}, indent=2, default=str))
    if not cfg.keep_checkpoints:
        _prune_checkpoints(run_dir)
    result.pretrained.append(str(run_dir))
    return run_dir


def run_cell(cfg: BenchmarkConfig, cell: Cell, result: BenchmarkResult) -> dict[str, Any]:
    fcfg = finetune_config(cfg, cell.method, cell.budget, cell.seed, cell.path, cell.pretrain_dir)
    settings = _settings(fcfg, {"method": cell.method.name, "budget": budget_label(cell.budget)})
    marker = cell.path / "summary.json"
    if marker.is_file():
        _check_marker(marker, settings)
        result.reused.append(str(cell.path))
        return json.loads(marker.read_text())
    t0 = time.time()
    _claim(cell.path, settings)
    if not (cell.path / "model.json").is_file():  # model.json is written last by finetune
        finetune(replace(fcfg, resume=(cell.path / "config.yaml").is_file()))
        result.finetuned.append(str(cell.path))
    t1 = time.time()
    summary = evaluate(cell.path, split="test", out=cell.path / "eval-test", overwrite=True, checkpoint="best", device=cfg.device,
                       overlays=cfg.max_overlays > 0, max_overlays=cfg.max_overlays, save_predictions=True)  # the report compares methods on the same images
    result.evaluated.append(str(cell.path))
    info = json.loads((cell.path / "model.json").read_text())
    record = {"method": cell.method.name, "budget": budget_label(cell.budget), "seed": cell.seed,
              "n_labels": info.get("n_train"), "n_val": info.get("n_val"), "n_test": summary["n_images"],
              "init": str(cell.pretrain_dir or ""), "task": info.get("task"), "class_names": summary["class_names"],
              "best_step": info.get("best_step"), "train_seconds": round(t1 - t0, 1), "eval_seconds": round(time.time() - t1, 1),
              "metrics": summary["metrics"], "settings": _recorded(settings)}
    atomic_write_text(marker, json.dumps(record, indent=2, default=str))  # last: marks the cell finished
    if not cfg.keep_checkpoints:
        _prune_checkpoints(cell.path)
    return record


def run_benchmark(cfg: BenchmarkConfig, out: str | Path, report_only: bool = False) -> BenchmarkResult:
    """Run (or resume) every cell, then write the outputs. ``report_only``: only the outputs,
    from the cells finished so far."""

    out = Path(out)
    cells = plan(cfg, out)
    result = BenchmarkResult(out, cells)
    missing = sorted({c.method.pretrain for c in cells if c.method.pretrain and c.method.pretrain not in METHODS})
    if missing and not report_only:
        raise ConfigError(f"pretraining method(s) {missing} are not available; valid: {', '.join(sorted(METHODS))} (or drop them with --methods)")
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out / "benchmark.yaml", yaml.safe_dump(_plain(cfg), sort_keys=False))
    started = time.time()
    if not report_only:
        data = _pretrain_data(cfg, out) if any(c.pretrain_dir for c in cells) else cfg.data
        for i, cell in enumerate(cells, start=1):
            tag = f"[{i}/{len(cells)}] {cell.method.name} budget {budget_label(cell.budget)} seed {cell.seed}"
            if cell.done:
                run_cell(cfg, cell, result)  # checks the settings, counts it as reused
                print(f"{tag}: finished earlier", flush=True)
                continue
            if cell.pretrain_dir is not None:
                ensure_pretrained(cfg, cell.method, cell.pretrain_seed, cell.pretrain_dir, data, result)
            rec = run_cell(cfg, cell, result)
            print(f"{tag}: test Dice {rec['metrics']['dice_mean']['mean']:.3f} ({rec['train_seconds']:.0f} s train, {rec['eval_seconds']:.0f} s eval)", flush=True)
    write_outputs(cfg, out, [c for c in cells if c.done], wall_seconds=time.time() - started, rebuilt=report_only)
    return result


def describe_plan(cfg: BenchmarkConfig, out: Path) -> str:
    """Human-readable plan (for --dry-run): every pretraining run and cell with its state."""

    cells = plan(cfg, out)
    lines = [f"benchmark {cfg.name} (profile {cfg.profile or '-'}): data {cfg.data}, image size {list(cfg.image_size)}",
             f"methods {[m.name for m in cfg.methods]}, budgets {[budget_label(b) for b in cfg.budgets]}, seeds {cfg.seeds}",
             f"pretraining: {cfg.pretrain}", f"fine-tuning: {cfg.finetune}", f"output: {out}", ""]
    seen = set()
    for c in cells:
        if c.pretrain_dir is not None and c.pretrain_dir not in seen:
            seen.add(c.pretrain_dir)
            state = "done" if (c.pretrain_dir / "pretrain_done.json").is_file() else "partial" if c.pretrain_dir.exists() else "todo"
            avail = "" if c.method.pretrain in METHODS else "  (METHOD NOT AVAILABLE)"
            lines.append(f"pretrain  {c.method.pretrain:<18} seed {c.pretrain_seed}: {state:<8} {c.pretrain_dir}{avail}")
    for c in cells:
        state = "done" if c.done else "partial" if c.path.exists() else "todo"
        lines.append(f"finetune  {c.method.name:<18} b{budget_label(c.budget):<5} s{c.seed}: {state:<8} {c.path}")
    todo = sum(not c.done for c in cells)
    lines.append(f"\n{len(seen)} pretraining runs, {len(cells)} cells ({todo} to do)")
    return "\n".join(lines)


__all__ = ["BenchmarkConfig", "MethodEntry", "Cell", "BenchmarkResult", "load_benchmark_config", "plan", "run_benchmark",
           "describe_plan", "budget_label", "fingerprint", "pretrain_config", "finetune_config", "collect", "result_rows",
           "aggregate", "write_outputs", "FINETUNE_PROTOCOL", "PRETRAIN_PROTOCOL", "NOT_FINGERPRINTED", "TOP_KEYS"]
