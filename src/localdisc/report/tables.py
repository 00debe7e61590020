"""Result tables for benchmarks, rendered as Markdown (results.md) or HTML (report.html).

A :class:`Table` holds plain strings plus the set of cells to emphasize, so both renderings
show exactly the same numbers. Rows are methods, columns are label budgets.
"""

from __future__ import annotations

import html
import math
from dataclasses import dataclass, field
from typing import Any, Sequence


@dataclass
class Table:
    title: str
    header: list[str]
    rows: list[list[str]]
    bold: set[tuple[int, int]] = field(default_factory=set)  # (row, column) of emphasized cells
    note: str = ""

    def to_markdown(self) -> str:
        def cell(r: int, c: int, text: str) -> str:
            text = text.replace("|", "\\|")
            return f"**{text}**" if (r, c) in self.bold and text else text

        lines = [f"### {self.title}", "", "| " + " | ".join(self.header) + " |", "|" + "|".join(["---"] + ["---:"] * (len(self.header) - 1)) + "|"]
        lines += ["| " + " | ".join(cell(r, c, t) for c, t in enumerate(row)) + " |" for r, row in enumerate(self.rows)]
        if self.note:
            lines += ["", self.note]
        return "\n".join(lines) + "\n"

    def to_html(self) -> str:
        def cell(r: int, c: int, text: str) -> str:
            t = html.escape(text)
            return f"<td><b>{t}</b></td>" if (r, c) in self.bold and text else f"<td>{t}</td>"

        head = "".join(f"<th>{html.escape(h)}</th>" for h in self.header)
        body = "".join("<tr>" + "".join(cell(r, c, t) for c, t in enumerate(row)) + "</tr>" for r, row in enumerate(self.rows))
        note = f"<p class='note'>{html.escape(self.note)}</p>" if self.note else ""
        return f"<h3>{html.escape(self.title)}</h3><table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>{note}"


def mean_std(mean: float, std: float, digits: int = 3) -> str:
    if mean is None or not math.isfinite(mean):
        return "n/a"
    return f"{mean:.{digits}f} ± {std:.{digits}f}"


def metric_table(agg: dict[tuple[str, str], tuple[float, float, int]], methods: Sequence[str], budgets: Sequence[str],
                 title: str, higher_is_better: bool = True, digits: int = 3) -> Table:
    """agg[(method, budget)] = (mean, std, n) -> table with the best mean per budget in bold
    (ties at the shown precision are all bold)."""
    rows, bold = [], set()
    for m in methods:
        rows.append([m] + [mean_std(*agg[(m, b)][:2], digits=digits) if (m, b) in agg else "" for b in budgets])
    for c, b in enumerate(budgets, start=1):
        vals = [(round(agg[(m, b)][0], digits), r) for r, m in enumerate(methods) if (m, b) in agg and math.isfinite(agg[(m, b)][0])]
        if vals:
            best = max(v for v, _ in vals) if higher_is_better else min(v for v, _ in vals)
            bold |= {(r, c) for v, r in vals if v == best}
    return Table(title, ["method"] + [f"labels: {b}" for b in budgets], rows, bold)


def format_p(p: float) -> str:
    if p is None or not math.isfinite(p):
        return "n/a"
    return f"{p:.2g}" if p >= 0.001 else "<0.001"


def comparison_table(comparisons: Sequence[dict[str, Any]], methods: Sequence[str], budgets: Sequence[str], metric: str,
                     title: str, alpha: float = 0.05, digits: int = 3) -> Table:
    """Cells '+0.031 (p=0.02, n=60)': mean paired difference vs the reference and its p-value;
    significant gains (p < alpha, positive difference) in bold. The reference row is omitted."""
    by = {(str(c["method"]), str(c["budget"])): c for c in comparisons if c["metric"] == metric}
    rows, bold = [], set()
    for m in methods:
        if not any((m, b) in by for b in budgets):
            continue
        row = [m]
        for c, b in enumerate(budgets, start=1):
            e = by.get((m, b))
            if e is None or not e["n"]:
                row.append("")
                continue
            p = format_p(e["p_value"])
            row.append(f"{e['mean_diff']:+.{digits}f} (p{'' if p.startswith('<') else '='}{p}, n={e['n']})")
            if math.isfinite(e["p_value"]) and e["p_value"] < alpha and e["mean_diff"] > 0:
                bold.add((len(rows), c))
        rows.append(row)
    note = f"Bold: better than random init with p < {alpha} (uncorrected for multiple comparisons)."
    return Table(title, ["method vs random"] + [f"labels: {b}" for b in budgets], rows, bold, note if rows else "")


def results_markdown(title: str, intro: Sequence[str], tables: Sequence[Table]) -> str:
    parts = [f"# {title}", "", *[f"{line}\n" for line in intro]]
    parts += [t.to_markdown() for t in tables]
    return "\n".join(parts)


__all__ = ["Table", "metric_table", "comparison_table", "results_markdown", "mean_std", "format_p"]
