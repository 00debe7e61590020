"""Choices made on validation Dice alone, applied to finished benchmark cells: the finetune guard
(pretrained or random init) and the fine-tuning length. Each choice reads a cell's best
validation Dice (its model.json) and never a test image; the chosen cell's own per-image test
rows then stand for the choice, so its effect on test is measured with the benchmark's paired
comparisons."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from ..tasks.guard import TWIN, choose

GUARDED = "ld-guarded"  # LD or random init per cell, whichever has the higher validation Dice (the finetune guard's rule)
Key = tuple[str, str, int]  # (method, budget, seed)


def _rows_by_cell(per_image: list[dict[str, Any]]) -> dict[Key, list[dict[str, Any]]]:
    out: dict[Key, list[dict[str, Any]]] = {}
    for row in per_image:
        out.setdefault((row["method"], row["budget"], row["seed"]), []).append(row)
    return out


def guarded_cells(records: list[dict[str, Any]], per_image: list[dict[str, Any]], pretrained: str = "ld",
                  name: str = GUARDED) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """The guard of ``localdisc finetune --init`` applied to finished cells: per (budget, seed), the
    ``pretrained`` cell or the random-init cell, whichever has the higher best validation Dice
    (:func:`localdisc.tasks.guard.choose`). Returns the derived records (``kept`` says which) and
    their per-image rows, both under method ``name``."""
    by = {(r["method"], r["budget"], r["seed"]): r for r in records}
    rows_of = _rows_by_cell(per_image)
    out_records, out_rows = [], []
    for (method, budget, seed), rec in by.items():
        rand = by.get(("random", budget, seed))
        if method != pretrained or rand is None:
            continue
        kept = choose(rec.get("best_val_dice"), rand.get("best_val_dice"))
        source = rand if kept == TWIN else rec
        out_records.append({**source, "method": name, "kept": "random" if kept == TWIN else pretrained})
        out_rows += [{**row, "method": name} for row in rows_of.get((source["method"], budget, seed), [])]
    return out_records, out_rows


def length_choice(by_length: dict[int, tuple[list[dict[str, Any]], list[dict[str, Any]]]]) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Fine-tuning length as part of each method's recipe: ``by_length`` maps a step count to the
    (records, per-image rows) of the cells run at that length. Per (method, budget, seed) present
    at every length, the length with the highest best validation Dice is kept (the shorter on a
    tie); returns its records (with ``steps``) and per-image rows."""
    lengths = sorted(by_length)
    cells = {n: {(r["method"], r["budget"], r["seed"]): r for r in recs} for n, (recs, _) in by_length.items()}
    rows = {n: _rows_by_cell(per_image) for n, (_, per_image) in by_length.items()}
    common = set.intersection(*(set(c) for c in cells.values())) if cells else set()
    out_records, out_rows = [], []
    for key in sorted(common, key=str):
        val = lambda n: cells[n][key].get("best_val_dice")  # noqa: E731
        best = max(lengths, key=lambda n: (val(n) if val(n) is not None else -1.0, -n))
        out_records.append({**cells[best][key], "steps": best})
        out_rows += rows[best].get(key, [])
    return out_records, out_rows


class FinishedCell:
    """A finished benchmark cell found on disk (what :func:`collect` needs: its folder)."""

    def __init__(self, path: Path):
        self.path = path


def finished_cells(out: str | Path) -> list[FinishedCell]:
    """Every finished cell (with summary.json and its test per-image scores) of a benchmark folder."""
    found = sorted(Path(out).glob("finetune/*/b*-s*/summary.json"))
    return [FinishedCell(p.parent) for p in found if (p.parent / "eval-test" / "per_image.csv").is_file()]


__all__ = ["GUARDED", "guarded_cells", "length_choice", "finished_cells", "FinishedCell"]
