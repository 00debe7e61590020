"""Benchmark outputs, made from the finished cells of
:mod:`localdisc.tasks.benchmark` (each cell's summary.json and eval-test/per_image.csv).

``write_outputs`` writes into the benchmark folder: results.csv (test means per method/budget/
seed/class), per_image.csv, comparisons.csv (paired tests vs random init), results.md,
dice_vs_labels.png, report.html and provenance.json. Rendering lives in :mod:`.tables`,
:mod:`.plots`, :mod:`.html` and :mod:`.provenance`, imported inside ``write_outputs`` so that
matplotlib loads only when a report is written.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ..evaluation.stats import compare_to_reference
from ..runtime.checkpoint import atomic_write_text
from ..runtime.outputs import atomic_write_csv
from ..runtime.provenance import provenance, provenance_markdown
from ..tasks.benchmark_config import BenchmarkConfig, budget_label
from .comparison import cases_by_method, same_images_figure
from .html import write_html_report
from .plots import dice_vs_labels
from .selection import GUARDED, guarded_cells
from .tables import comparison_table, label_savings, metric_table, results_markdown, savings_table

if TYPE_CHECKING:
    from ..tasks.benchmark import Cell


def _float(v: Any) -> float:
    try:
        return float(v)
    except (TypeError, ValueError):
        return float("nan")


def collect(cells: list[Cell]) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(cell records from summary.json with the cell's best validation Dice, per-image rows tagged
    with method/budget/seed/n_labels)."""
    records, per_image = [], []
    for c in cells:
        rec = json.loads((c.path / "summary.json").read_text())
        info = json.loads((c.path / "model.json").read_text()) if (c.path / "model.json").is_file() else {}
        rec["best_val_dice"] = info.get("best_val_dice")
        evaluated = c.path / "eval-test" / "summary.json"
        rec["hd95_unit"] = json.loads(evaluated.read_text()).get("hd95_unit", "pixels") if evaluated.is_file() else "pixels"
        records.append(rec)
        with open(c.path / "eval-test" / "per_image.csv", newline="") as f:
            for row in csv.DictReader(f):
                per_image.append({"method": rec["method"], "budget": rec["budget"], "seed": rec["seed"], "n_labels": rec["n_labels"], **row})
    return records, per_image


def result_rows(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """results.csv: one row per method/budget/seed/class (test means; 'mean' = over classes)."""
    rows = []
    for rec in records:
        m, fg = rec["metrics"], rec["class_names"][1:]
        vessel = "auc" in m
        for cls in fg + (["mean"] if len(fg) > 1 else []):
            names = fg if cls == "mean" else [cls]
            get = lambda k: sum(_float(m.get(f"{k}_{n}", {}).get("mean")) for n in names) / len(names)  # noqa: E731
            row = {"method": rec["method"], "budget": rec["budget"], "seed": rec["seed"], "n_labels": rec["n_labels"],
                   "class": cls, "n_test": rec["n_test"], "dice": get("dice"), "iou": get("iou"), "hd95": get("hd95")}
            if vessel:
                row.update(auc=_float(m["auc"]["mean"]), acc=_float(m.get("accuracy", {}).get("mean")))
            rows.append(row)
    return rows


def aggregate(per_image: list[dict[str, Any]], column: str) -> dict[tuple[str, str], tuple[float, float, int]]:
    """(method, budget) -> (mean, std, n) of a per-image column, pooled over images and seeds."""

    groups: dict[tuple[str, str], list[float]] = {}
    for r in per_image:
        groups.setdefault((str(r["method"]), str(r["budget"])), []).append(_float(r.get(column)))
    out = {}
    for k, vals in groups.items():
        v = np.asarray(vals, dtype=np.float64)
        v = v[np.isfinite(v)]
        out[k] = (float(v.mean()), float(v.std()), int(v.size)) if v.size else (float("nan"), float("nan"), 0)
    return out


def mean_ci(per_image: list[dict[str, Any]], column: str) -> dict[tuple[str, str], float]:
    """(method, budget) -> half-width of a 95% CI of the mean: 1.96 x the standard error over test
    images of their means over seeds (images are the independent unit)."""

    groups: dict[tuple[str, str], dict[str, list[float]]] = {}
    for r in per_image:
        v = _float(r.get(column))
        if np.isfinite(v):
            groups.setdefault((str(r["method"]), str(r["budget"])), {}).setdefault(str(r["id"]), []).append(v)
    out = {}
    for k, by_image in groups.items():
        m = np.array([np.mean(v) for v in by_image.values()])
        out[k] = float(1.96 * m.std(ddof=1) / np.sqrt(m.size)) if m.size > 1 else float("nan")
    return out


def verdict_lines(comparisons: list[dict[str, Any]], methods: list[str], budgets: list[str], seeds: list[int], shared_pretraining: bool) -> list[str]:
    """The report's first lines: per method and budget, whether pretraining helped (mean Dice vs
    random init: helps / hurts / cannot tell from the 95% CI), and warnings that say what the
    comparison cannot show."""
    by = {(c["method"], c["budget"]): c for c in comparisons if c["metric"] == "dice_mean"}
    lines = []
    for m in methods:
        cells = [by[(m, b)] for b in budgets if (m, b) in by]
        if cells:
            lines.append(f"**{m}** vs random init: " + "; ".join(
                f"{c['verdict']} at {c['budget']} label{'' if str(c['budget']) == '1' else 's'} ({c['mean_diff']:+.3f} [{c['ci_low']:+.3f}, {c['ci_high']:+.3f}])" for c in cells))
    if not lines:
        return []
    head = ["**Verdict** (mean Dice difference vs random init on the test images, 95% CI over test images and seeds; "
            "helps = CI above 0, hurts = CI below 0):"] + lines
    if len(seeds) < 2:
        head.append("**Warning: one seed.** The CI covers only the variation between test images, not another labeled subset or "
                    "initialization; a gain may not survive a second seed. Run at least 3 seeds before trusting it.")
    if shared_pretraining:
        head.append("**Note:** every comparison rests on one pretraining run per method; another pretraining seed may differ.")
    return head


def _guard_table(out: Path, records: list[dict[str, Any]], per_image: list[dict[str, Any]], methods: list[str], budgets: list[str]) -> list[Any]:
    """Every pretrained method with the guard (pretrained or random init per cell, on validation
    Dice) minus random init: does the guard take away the harm where a method hurts?
    Writes comparisons_guarded.csv."""
    pretrained = [m for m in methods if m not in ("random", GUARDED)]
    derived = [guarded_cells(records, per_image, m, f"{m} + guard") for m in pretrained]
    rows = [r for r in per_image if r["method"] == "random"] + [row for _, part in derived for row in part]
    names = [f"{m} + guard" for m, (recs, _) in zip(pretrained, derived) if recs]
    if not names:
        return []
    comparisons = compare_to_reference(rows, ["dice_mean"])
    atomic_write_csv(out / "comparisons_guarded.csv", comparisons, float_format=".6g", empty_header=("method",))
    kept = {n: sum(r["kept"] == "random" for r in recs) for n, (recs, _) in zip((f"{m} + guard" for m in pretrained), derived) if recs}
    title = ("The guard on every method: per cell, the pretrained or the random-init model, whichever has the higher validation "
             "Dice, minus random init (mean over classes); random init kept in " + ", ".join(f"{k} {v}/{sum(1 for r in records if r['method'] == k.split(' + ')[0])}" for k, v in kept.items()))
    return [comparison_table(comparisons, names, budgets, "dice_mean", title)]


def settings_text(settings: dict[str, Any]) -> str:
    """{"steps": 1200, "image_size": [256, 256]} -> "`steps 1200`, `image_size 256 256`" (defaults when empty)."""
    if not settings:
        return "the command's defaults"
    show = lambda v: " ".join(map(str, v)) if isinstance(v, (list, tuple)) else str(v)  # noqa: E731
    return ", ".join(f"`{k} {show(v)}`" for k, v in settings.items())


def write_outputs(cfg: BenchmarkConfig, out: Path, cells: list[Cell], wall_seconds: float | None = None, rebuilt: bool = False) -> dict[str, Path]:
    """results.csv, per_image.csv, comparisons.csv (every method minus random init), comparisons_vs_ld.csv
    (every method minus LD, when LD and another method ran), results.md, dice_vs_labels.png, report.html.
    ``rebuilt``: only the outputs are written now (--report-only); the provenance keeps the run that
    computed the cells and their wall time."""

    if not cells:
        print(f"no finished cells in {out} yet: nothing to report")
        return {}
    records, per_image = collect(cells)
    guarded, guarded_rows = guarded_cells(records, per_image)
    records, per_image = records + guarded, per_image + guarded_rows
    class_names = records[0]["class_names"]
    fg = class_names[1:]
    vessel = "auc" in records[0]["metrics"]
    methods = [m.name for m in cfg.methods if any(r["method"] == m.name for r in records)]
    if guarded:
        methods.insert(methods.index("ld") + 1, GUARDED)
    budgets = [budget_label(b) for b in cfg.budgets if any(r["budget"] == budget_label(b) for r in records)]
    atomic_write_csv(out / "results.csv", result_rows(records), float_format=".6g", empty_header=("method",))
    atomic_write_csv(out / "per_image.csv", per_image, float_format=".6g", empty_header=("method",))
    panels = [(f"dice_{c}", c) for c in fg] + ([("dice_mean", "mean over classes")] if len(fg) > 1 else [])
    metrics = [k for k, _ in panels] + (["dice_mean"] if len(fg) == 1 else []) + [f"hd95_{c}" for c in fg]
    comparisons = compare_to_reference(per_image, metrics)  # a dice_mean row for every dataset
    atomic_write_csv(out / "comparisons.csv", comparisons, float_format=".6g", empty_header=("method",))

    tables = []
    for key, label in panels:
        tables.append(metric_table(aggregate(per_image, key), methods, budgets, f"Dice ({label}), test set", True))
        comp = comparison_table(comparisons, methods, budgets, key, f"Paired Dice difference vs random init ({label})")
        if comp.rows:
            tables.append(comp)
    if "ld" in methods and len(methods) > 2:  # what a user picks instead of LD: each other method minus LD
        versus_ld = compare_to_reference(per_image, ["dice_mean"], reference="ld")
        atomic_write_csv(out / "comparisons_vs_ld.csv", versus_ld, float_format=".6g", empty_header=("method",))
        tables.append(comparison_table(versus_ld, [m for m in methods if m != "ld"], budgets, "dice_mean",
                                       "Paired Dice difference vs LD (mean over classes): each method minus LD, below 0 = LD better", reference="ld"))
    tables += _guard_table(out, records, per_image, methods, budgets)
    n_labels = {(r["method"], r["budget"]): r["n_labels"] for r in records}
    means = {k: v[0] for k, v in aggregate(per_image, "dice_mean").items()}
    ref_max = max((float(n_labels[("random", b)]) for b in budgets if n_labels.get(("random", b))), default=0.0)
    tables.append(savings_table(label_savings(means, n_labels, methods, budgets), methods, budgets, ref_max,
                                "Label savings: labels random init needs to match each method (mean Dice)"))
    for c in fg:
        tables.append(metric_table(aggregate(per_image, f"hd95_{c}"), methods, budgets, f"HD95 ({c}), {records[0]['hd95_unit']}, lower is better", False, digits=1))
    if vessel:
        tables.append(metric_table(aggregate(per_image, "auc"), methods, budgets, "AUC inside the field of view", True))
        tables.append(metric_table(aggregate(per_image, "accuracy"), methods, budgets, "Accuracy inside the field of view", True))
    seeds = sorted({r["seed"] for r in records})
    size = f"images resized to {'x'.join(map(str, cfg.image_size))}" if cfg.image_size else "images at their own resolution"
    intro = [f"**Data** `{cfg.data}`, {size}; profile `{cfg.profile or '-'}`; "
             f"fine-tuning seeds {', '.join(map(str, seeds))} (each draws its own labeled subset); "
             f"{len(cells)} of {len(cfg.methods) * len(cfg.budgets) * len(cfg.seeds)} cells finished.",
             "**Labeled training images per budget**: " + ", ".join(f"{b} = {n_labels.get(('random', b), '?')}" for b in budgets) + ".",
             f"**Pretraining**: {settings_text(cfg.pretrain)}. **Fine-tuning** (the same for every method): {settings_text(cfg.finetune)}.",
             "**Methods**: " + "; ".join(f"`{m.name}` = {m.pretrain or 'random init'}" + (f" ({settings_text({**m.pretrain_options, **m.method, **m.finetune})})" if m.pretrain_options or m.method or m.finetune else "")
                                         for m in cfg.methods if m.name in methods) + "."
             + (f" `{GUARDED}` = the guard of `localdisc finetune --init`: per label budget and seed, the LD cell or the random-init cell, "
                f"whichever has the higher validation Dice (random init kept in {sum(r['kept'] == 'random' for r in guarded)} of {len(guarded)} cells; "
                "no extra training)." if guarded else ""),
             "Dice tables: mean ± std over test images pooled over seeds; best per column in bold. Comparisons with random init "
             "match (test image, seed); test images are the independent unit (see the note under each comparison table). "
             "Checkpoints are selected on validation images carved from the labeled training images, never on test."]
    intro = verdict_lines(comparisons, methods, budgets, seeds, cfg.pretrain_seed is not None) + intro
    if cfg.pretrain_seed is not None:
        intro.append(f"One pretraining run per method (seed {cfg.pretrain_seed}) is shared by every fine-tuning seed: the seeds vary "
                     "the label subset and the fine-tuning, not the pretraining.")
    prov = provenance(cfg.device or "cpu")
    earlier = json.loads((out / "provenance.json").read_text()) if (out / "provenance.json").is_file() else {}
    invocations = list(earlier.get("invocations") or [])
    if rebuilt:
        # the cells were computed by the same command without --report-only; record that one
        prov["command"] = prov["command"].replace(" --report-only", "") + "  (report rebuilt from the finished cells)"
        if earlier:  # a rebuild of a rebuild keeps the run that computed the cells
            prov["cells_computed_by"] = earlier.get("cells_computed_by") or {k: v for k, v in earlier.items() if k in ("command", "commit", "date")}
        wall_seconds = None  # rebuilding the report is not the cells' wall time
    elif wall_seconds is not None:
        invocations.append({"date": prov["date"], "commit": prov["commit"], "wall_seconds": round(wall_seconds, 1)})
    wall_seconds = sum(float(i["wall_seconds"]) for i in invocations) if invocations else wall_seconds
    train_s = sum(float(r.get("train_seconds") or 0) + float(r.get("eval_seconds") or 0) for r in records)
    pre_s = 0.0
    for d in {c.pretrain_dir for c in cells if c.pretrain_dir is not None}:
        done = d / "pretrain_done.json"
        pre_s += float(json.loads(done.read_text()).get("seconds") or 0) if done.is_file() else 0.0
    intro += provenance_markdown(prov, wall_seconds, len(invocations)) + [f"Compute summed over runs: pretraining {pre_s / 60:.1f} min, fine-tuning + evaluation {train_s / 60:.1f} min."]
    atomic_write_text(out / "provenance.json", json.dumps({**prov, "wall_seconds": wall_seconds, "invocations": invocations}, indent=2))
    md = results_markdown(f"Benchmark: {cfg.name}", intro, tables)
    atomic_write_text(out / "results.md", md)

    curves: dict[str, dict[str, list[tuple[float, float, float]]]] = {}
    for key, label in panels:
        agg = aggregate(per_image, key)
        ci = mean_ci(per_image, key)
        curves[label] = {m: [(float(n_labels.get((m, b)) or 0), agg[(m, b)][0], ci[(m, b)]) for b in budgets if (m, b) in agg] for m in methods}
    plot = dice_vs_labels(curves, out / "dice_vs_labels.png", title=f"{cfg.name}: test Dice vs labeled images")

    first = budgets[0] if budgets else None
    same = same_images_figure(cells, per_image, methods, first, class_names, out / "same_images.png") if first else None
    html = write_html_report(out / "report.html", f"Benchmark: {cfg.name}", intro, tables,
                             [("Test Dice vs number of labeled training images (band: 95% CI of the mean)", plot),
                              (f"The same test images across methods: labels {first}; rows are random init's worst, median and best image", same)],
                             cases_by_method(cells, methods, first) if first else {})
    return {"results.csv": out / "results.csv", "per_image.csv": out / "per_image.csv", "comparisons.csv": out / "comparisons.csv",
            "results.md": out / "results.md", "dice_vs_labels.png": plot, "report.html": html}


__all__ = ["collect", "guarded_cells", "result_rows", "aggregate", "write_outputs", "GUARDED"]
