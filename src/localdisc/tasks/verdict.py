"""Does pretraining help on *my* data? A verdict from the user's own few labeled images.

Repeated k-fold cross-validation over the labeled images: in every repetition the images are
shuffled (seed + repetition) and split into k folds; for every fold, fine-tuning from random
init and from each pretrained run uses the other folds, and the held-out fold is scored. Every
labeled image is thus scored once per repetition by every initialization, on the same folds, so
the comparison pairs up per (image, repetition). The difference in mean Dice gets a 95% CI from
the two-way bootstrap over images and repetitions (``stats.cluster_bootstrap``, the benchmark's),
and the verdict reads the CI: helps (above 0), hurts (below 0) or cannot tell.

Writes into ``out``: ``folds/`` (one manifest per fold, and the masks a layout composes), ``runs/`` (every fine-tuning run and its
evaluation), ``per_image.csv`` (id, repetition, init, Dice), ``verdict.json`` and ``verdict.md``.
With ``budget_minutes`` the schedule stops starting new repetitions once the budget is spent;
the verdict then rests on the repetitions that finished.
"""

from __future__ import annotations

import csv
import json
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np

from ..data.dataset_json import DatasetInfo, dataset_json_text
from ..data.records import compose_mask
from ..data.sources import resolve_source
from ..errors import ConfigError, DataError
from ..evaluation.stats import cluster_bootstrap, p_label
from ..evaluation.stats import verdict as read_ci
from ..nets.transfer import load_backbone_config
from ..report.overlays import save_mask
from ..runtime.outputs import StagedOutput, atomic_write_bytes, atomic_write_csv, check_not_inputs, data_inputs
from ..train.finetune import FinetuneConfig, finetune
from ..utils import SafeNames
from .evaluate import evaluate


def labeled_files(samples: list, folder: Path) -> dict[str, str]:
    """Sample id -> mask file. Masks a layout composes from parts (the chest X-rays' outlines)
    are written once into ``folder/masks/``; ``folder/dataset.json`` keeps what a manifest cannot
    say (class names, left/right flip pairs, channels), so each fold's run reads the data as the
    layout does."""
    files, names = {}, SafeNames()
    for s in samples:
        if s.mask:
            files[s.id] = str(Path(s.mask).resolve())
        elif s.extra.get("mask_composer"):
            mask = compose_mask(s)
            num_classes = len(s.extra.get("class_names", ())) or int(mask.max()) + 1
            files[s.id] = str(save_mask(mask, folder / "masks" / f"{names(s.id)}.png", num_classes).resolve())
    first = samples[0].extra
    info = DatasetInfo(list(first.get("class_names", ())), [tuple(p) for p in first.get("flip_pairs", ())], int(first.get("channels") or 0))
    if info.class_names or info.flip_pairs or info.channels:
        atomic_write_bytes(folder / "dataset.json", dataset_json_text(info).encode())
    return files


def fold_manifests(samples: list, folds: int, repeats: int, seed: int, folder: Path) -> list[tuple[int, int, Path]]:
    """(repetition, fold, manifest) for every fold: ``split`` test for the fold, train for the rest."""
    masks = labeled_files(samples, folder)
    rows = []
    for r in range(repeats):
        order = np.random.default_rng(seed + r).permutation(len(samples))
        for f in range(folds):
            held = set(order[f::folds].tolist())
            lines = ["id,image,mask,fov,split"] + [
                ",".join([_cell(s.id), _cell(str(Path(s.image).resolve())), _cell(masks.get(s.id, "")),
                          _cell(str(Path(s.fov).resolve()) if s.fov else ""), "test" if i in held else "train"])
                for i, s in enumerate(samples)]
            path = folder / f"r{r}-f{f}.csv"
            atomic_write_bytes(path, ("\n".join(lines) + "\n").encode())
            rows.append((r, f, path))
    return rows


def _cell(text: str) -> str:
    return '"' + text.replace('"', '""') + '"' if any(c in text for c in ',"\n') else text


def run_verdict(data: str, init: list[str], out: str | Path, folds: int = 5, repeats: int = 2, steps: int = 300, seed: int = 0,
                budget_minutes: float = 0.0, overwrite: bool = False, log: Callable[[str], Any] = print, **options: Any) -> dict[str, Any]:
    """The verdict for every run in ``init`` against random init (see the module doc).
    ``options``: fine-tuning options (``image_size``, ``batch_size``, ``lr``, ...)."""
    if not init:
        raise ConfigError("--init: name at least one pretraining run to compare with random init")
    if folds < 2 or repeats < 1 or steps < 1:
        raise ConfigError(f"--folds must be >= 2, --repeats >= 1 and --steps >= 1 (got {folds}, {repeats}, {steps})")
    every = resolve_source(data)
    samples = [s for s in every if s.mask or s.extra.get("mask_composer")]
    if len(samples) < folds:
        hint = " (no masks: give image/mask folders, a manifest with a mask column, an MSD folder or a labeled layout)" if every and not samples else ""
        raise DataError(f"{data}: {len(samples)} labeled images, fewer than --folds {folds}{hint}")
    names = {"random": ""} | {Path(p).name or str(p): str(p) for p in init}
    network = same_network(init)
    check_not_inputs(out, (f for s in samples for f in (s.image, s.mask, s.fov)))
    staged = StagedOutput(out, [*data_inputs(data), *init], overwrite, "verdict")
    try:
        schedule = fold_manifests(samples, folds, repeats, seed, staged.path / "folds")
        runs = len(schedule) * len(names)
        log(f"verdict: {len(samples)} labeled images of {data}; {repeats} x {folds}-fold cross-validation; inits {', '.join(names)}; "
            f"{runs} fine-tuning runs of {steps} steps" + (f"; budget {budget_minutes:g} min" if budget_minutes else ""))
        scores, started, done_reps, projected = [], time.time(), set(), False
        for r, f, manifest in schedule:
            spent = (time.time() - started) / 60
            if budget_minutes and f == 0 and r > 0 and spent > budget_minutes:
                log(f"verdict: budget of {budget_minutes:g} min spent after {r} repetition(s); the verdict rests on those")
                break
            for name, path in names.items():
                cfg = FinetuneConfig(data=str(manifest), out=str(staged.path / "runs" / f"{name}-r{r}-f{f}"), init=path, labels=0,
                                     val_fraction=0, steps=steps, seed=seed + r, **network, **options)
                t0 = time.time()
                run = finetune(cfg)
                summary = evaluate(run, split="test", overlays=False, save_predictions=False, device=cfg.device)
                with open(Path(summary["out"]) / "per_image.csv", newline="") as fh:
                    scores += [{"id": row["id"], "repetition": r, "fold": f, "init": name, "dice": float(row["dice_mean"])} for row in csv.DictReader(fh)]
                if not projected:
                    projected = True
                    log(f"verdict: the first run took {time.time() - t0:.0f} s: about {(time.time() - t0) * runs / 60:.0f} min for all {runs}")
            if f == folds - 1:
                done_reps.add(r)
        result = summarize(scores, list(names), sorted(done_reps), time.time() - started)
        _write(staged.path, scores, result)
    except BaseException:
        staged.abandon()
        raise
    staged.commit()
    for line in result["lines"]:
        log(line)
    return result


def same_network(init: list[str]) -> dict[str, Any]:
    """The network every initialization trains: the pretraining runs' (random init gets the same
    widths and normalization, so only the initial weights differ). Runs of different networks
    are refused: their comparison would mix network size with pretraining."""
    configs = {str(p): load_backbone_config(p)[0] for p in init}
    shapes = {(c.encoder_channels, c.decoder_channels, c.norm) for c in configs.values()}
    if len(shapes) > 1:
        raise ConfigError(f"--init: the runs have different networks ({', '.join(f'{p}: {c.encoder_channels}' for p, c in configs.items())}); "
                          "compare runs of one network per verdict")
    enc, dec, norm = shapes.pop()
    return {"encoder_channels": enc, "decoder_channels": dec, "norm": norm}


def summarize(scores: list[dict[str, Any]], inits: list[str], repetitions: list[int], seconds: float) -> dict[str, Any]:
    """Per pretrained init: mean Dice difference vs random with its CI, p and verdict."""
    if not repetitions:
        raise ConfigError("no repetition finished within the budget; raise --budget-minutes or lower --steps")
    ids = sorted({s["id"] for s in scores})
    table = {(s["init"], s["id"], s["repetition"]): s["dice"] for s in scores}
    out: dict[str, Any] = {"repetitions": repetitions, "images": len(ids), "minutes": round(seconds / 60, 1), "comparisons": {}, "lines": []}
    for name in inits[1:]:
        d = np.array([[table.get((name, i, r), np.nan) - table.get(("random", i, r), np.nan) for r in repetitions] for i in ids])
        lo, hi, p = cluster_bootstrap(d)
        mean = float(np.nanmean(d))
        word = read_ci(lo, hi)
        out["comparisons"][name] = {"mean_diff": mean, "ci_low": lo, "ci_high": hi, "p_value": p, "verdict": word}
        advice = {"helps": f"use {name}", "hurts": "use random init", "cannot tell": "random init is as good as far as these labels can tell"}[word]
        out["lines"].append(f"verdict: {name} {word}: {mean:+.3f} Dice vs random init [95% CI {lo:+.3f}, {hi:+.3f}], {p_label(p)}, over {len(ids)} "
                            f"images x {len(repetitions)} repetition(s) in {out['minutes']:g} min: {advice}")
    return out


def agreement(verdict: dict[str, Any], benchmark: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """A verdict (one entry of verdict.json's "comparisons") against the benchmark's test-set
    comparisons of the same method (comparisons.csv rows, metric dice_mean), per budget. They
    agree when the verdict says helps/hurts and the benchmark's mean difference has that sign, or
    the verdict cannot tell and the benchmark's CI includes 0."""
    rows = []
    for b in benchmark:
        lo, hi, mean = float(b["ci_low"]), float(b["ci_high"]), float(b["mean_diff"])
        word = verdict["verdict"]
        agrees = (lo <= 0 <= hi) if word == "cannot tell" else (mean > 0) == (word == "helps")
        rows.append({"budget": b["budget"], "benchmark_mean_diff": mean, "benchmark_ci": [lo, hi], "benchmark_verdict": b["verdict"],
                     "verdict": word, "verdict_mean_diff": verdict["mean_diff"], "same_sign": (mean > 0) == (verdict["mean_diff"] > 0),
                     "agrees": bool(agrees)})
    return rows


def _write(folder: Path, scores: list[dict[str, Any]], result: dict[str, Any]) -> None:
    atomic_write_csv(folder / "per_image.csv", scores)
    atomic_write_bytes(folder / "verdict.json", json.dumps(result, indent=2).encode())
    md = ["# Does pretraining help on these images?", "", *result["lines"], "",
          "Repeated k-fold cross-validation over the labeled images; every image is scored once per repetition by every "
          "initialization on the same folds; 95% CI from the two-way bootstrap over images and repetitions."]
    atomic_write_bytes(folder / "verdict.md", ("\n".join(md) + "\n").encode())


__all__ = ["run_verdict", "summarize", "labeled_files", "fold_manifests", "same_network", "agreement"]
