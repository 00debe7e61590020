"""Does LD's gain over random init grow with pretraining compute? (benchmarks/ld_gain_vs_steps.py)

From a finished ``localdisc benchmark`` folder and LD weights saved at intermediate pretraining
steps (the stage-1 result, and copies ``NAME-s2-STEP.safetensors`` of stage-2 checkpoints, which
the run itself prunes to its last two): each point is fine-tuned at the benchmark's smallest
label budget with its seeds and fine-tuning protocol (:func:`finetune_point`), and compared with
the benchmark's own random-init cells on the same test images (:func:`gain_table`: paired,
test images as the unit, :func:`localdisc.evaluation.stats.compare_to_reference`). The last
point is the benchmark's own LD row.
"""

from __future__ import annotations

import csv
import shutil
from pathlib import Path
from typing import Any, Sequence

import yaml

from ..evaluation.stats import compare_to_reference
from ..runtime.checkpoint import load_weights, save_weights
from ..train.finetune import finetune
from .benchmark import Cell, finetune_config
from .benchmark_config import BenchmarkConfig, MethodEntry
from .evaluate import evaluate


def pseudo_run(weights: Path, template: Path, out: Path) -> Path:
    """A pretraining run folder (backbone.safetensors + backbone.json) from a full LD state dict
    ``weights`` (its ``backbone.*`` tensors), the network described by ``template``'s backbone.json."""
    out.mkdir(parents=True, exist_ok=True)
    state = load_weights(weights)
    save_weights({k[len("backbone."):]: v for k, v in state.items() if k.startswith("backbone.")}, out / "backbone.safetensors", metadata={"method": "ld"})
    shutil.copy(template / "backbone.json", out / "backbone.json")
    return out


def cell_rows(cell_dir: Path, method: str, seed: int) -> list[dict[str, Any]]:
    """The per-image test rows of a fine-tuning cell, labeled with ``method`` and ``seed`` (one budget)."""
    with open(cell_dir / "eval-test" / "per_image.csv", newline="") as f:
        return [{"method": method, "budget": "b", "seed": seed, **r} for r in csv.DictReader(f)]


def curve_points(pretrain_dir: Path, checkpoints: Path, name: str, only: Sequence[int] = ()) -> tuple[list[tuple[int, Path]], int]:
    """([(total steps, weights)] before the end of the run, total steps of the run): the stage-1
    result, then each stage-2 copy ``checkpoints/NAME-s2-STEP.safetensors``; ``only``: keep these totals."""
    n1 = int(yaml.safe_load((pretrain_dir / "stage1" / "config.yaml").read_text())["steps"])
    total = n1 + int(yaml.safe_load((pretrain_dir / "config.yaml").read_text())["steps"])
    points = [(n1, pretrain_dir / "stage1" / "model.safetensors")]
    for f in sorted(Path(checkpoints).glob(f"{name}-s2-*.safetensors")):
        steps = n1 + int(f.stem.rsplit("-", 1)[1])
        if steps < total:
            points.append((steps, f))
    return [(n, f) for n, f in points if not only or n in only], total


def finetune_point(cfg: BenchmarkConfig, entry: MethodEntry, run: Path, work: Path, label: str) -> list[dict[str, Any]]:
    """Fine-tune from ``run`` with the benchmark's protocol at its smallest budget, every seed
    (cells already scored are reused); their per-image test rows as method ``label``."""
    rows = []
    for seed in cfg.seeds:
        cell = work / f"s{seed}"
        if not (cell / "eval-test" / "per_image.csv").is_file():
            fcfg = finetune_config(cfg, entry, cfg.budgets[0], seed, cell, run)
            fcfg.overwrite = True
            finetune(fcfg)
            evaluate(cell, split="test", overlays=False, save_predictions=False, device=cfg.device)
        rows += cell_rows(cell, label, seed)
    return rows


def cells_rows(cells: dict[int, Cell], label: str) -> list[dict[str, Any]]:
    """Per-image rows of the benchmark's own cells ({seed: cell})."""
    return [r for seed, c in cells.items() for r in cell_rows(c.path, label, seed)]


def gain_table(points: Sequence[tuple[int, list[dict[str, Any]]]], reference: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """[(steps, per-image rows of that point)] against the random-init rows -> one row per point:
    {pretrain_steps, mean_diff, ci_low, ci_high, p_value, n_images, n_seeds} of the Dice difference."""
    table = []
    for steps, rows in points:
        (c,) = [c for c in compare_to_reference(reference + rows, ["dice_mean"]) if c["method"] != "random"]
        table.append({"pretrain_steps": steps, **{k: c[k] for k in ("mean_diff", "ci_low", "ci_high", "p_value", "n_images", "n_seeds")}})
    return table
