"""Pictures that compare methods on the same test images, from a benchmark's finished cells.

``same_images_figure``: at one label budget and seed, the test images on which random init
does worst, at its median and best (by mean Dice), one row each, with every method's
prediction in its own titled column (``report.overlays.save_comparison``). Predictions are
read from each cell's ``eval-test/predictions/``; images and truth from the data, split as
the cell's run split it. 2D data only (volumes: each cell's own overlays show a slice).

``cases_by_method``: per method, the worst/median/best overlays its evaluation drew
(``eval-test/overlays/cases.json``).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any, Sequence

import numpy as np
from PIL import Image

from ..data.records import load_sample_image, load_sample_mask
from ..runtime.run import read_run_config
from ..tasks.benchmark_config import budget_label
from ..tasks.evaluate import _samples_for
from ..utils import safe_name
from .overlays import save_comparison

if TYPE_CHECKING:
    from ..tasks.benchmark import Cell


def _prediction(cell_path: Path, sample_id: str, num_classes: int) -> np.ndarray | None:
    path = cell_path / "eval-test" / "predictions" / f"{safe_name(sample_id)}.png"
    if not path.is_file():
        return None
    pred = np.asarray(Image.open(path))
    return (pred > 0).astype(np.uint8) if num_classes == 2 else pred  # binary tasks are saved as 0/255


def pick_rows(per_image: Sequence[dict[str, Any]], method: str, budget: str, seed: Any, column: str = "dice_mean") -> list[tuple[str, str, float]]:
    """[(case, image id, value)] of ``method``'s worst, median and best test images."""
    vals = sorted(((float(r[column]), str(r["id"])) for r in per_image
                   if str(r["method"]) == method and str(r["budget"]) == budget and str(r["seed"]) == str(seed) and r.get(column) not in (None, "")),
                  key=lambda t: t[0])
    vals = [v for v in vals if np.isfinite(v[0])]
    if not vals:
        return []
    picks = [("worst", vals[0]), ("best", vals[-1]), ("median", vals[len(vals) // 2])]
    out, seen = [], set()
    for case, (v, i) in picks:
        if i not in seen:
            seen.add(i)
            out.append((case, i, v))
    return sorted(out, key=lambda t: ("worst", "median", "best").index(t[0]))


def same_images_figure(cells: Sequence[Cell], per_image: Sequence[dict[str, Any]], methods: Sequence[str], budget: str,
                       class_names: Sequence[str], path: Path, reference: str = "random") -> Path | None:
    """Write the comparison figure to ``path``; None when it cannot be drawn (3D data, no saved
    predictions, or the reference was not run at ``budget``)."""

    at_budget = [c for c in cells if budget_label(c.budget) == budget]
    ref = next((c for c in at_budget if c.method.name == reference), None)
    if ref is None:
        return None
    by_method = {m: next((c for c in at_budget if c.method.name == m and c.seed == ref.seed), None) for m in methods}
    picks = pick_rows(per_image, reference, budget, ref.seed)
    run_cfg = read_run_config(ref.path)
    samples = {s.id: s for s in _samples_for(run_cfg, run_cfg["data"], "test")}
    rows = []
    k = len(class_names)
    for case, sample_id, value in picks:
        s = samples.get(sample_id)
        if s is None:
            continue
        image = load_sample_image(s)
        if image.ndim != 3:
            return None
        preds = {m: p for m, c in by_method.items() if c is not None and (p := _prediction(c.path, sample_id, k)) is not None}
        if len(preds) < 2:
            return None
        short = sample_id if len(sample_id) <= 20 else sample_id[:19] + "…"  # a rotated row label has room for ~20 characters
        rows.append((f"{short}\n{reference} {case} (Dice {value:.2f})", image, load_sample_mask(s, k), preds))
    if not rows:
        return None
    return save_comparison(rows, path, class_names)


def cases_by_method(cells: Sequence[Cell], methods: Sequence[str], budget: str) -> dict[str, list[tuple[str, Path]]]:
    """{"METHOD (labels B, seed S)": [(caption, overlay png)]} of each method's worst/median/best."""

    out: dict[str, list[tuple[str, Path]]] = {}
    for m in methods:
        cell = next((c for c in cells if c.method.name == m and budget_label(c.budget) == budget), None)
        listing = cell.path / "eval-test" / "overlays" / "cases.json" if cell is not None else None
        if listing is None or not listing.is_file():
            continue
        cases = [c for c in json.loads(listing.read_text()) if c["case"] in ("worst", "median", "best")]
        out[f"{m} (labels: {budget}, seed {cell.seed})"] = [(f"{c['case']}: {c['id']} (Dice {c['dice_mean']:.3f})", listing.parent / c["file"]) for c in cases]
    return out
