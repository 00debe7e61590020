"""Result tables for benchmarks, rendered as Markdown (results.md) or HTML (report.html).

A :class:`Table` holds plain strings plus the set of cells to emphasize, so both renderings
show exactly the same numbers. Rows are methods, columns are label budgets.
"""

from __future__ import annotations

import html
import math
from dataclasses import dataclass, field
from typing import Any, Sequence

from ..evaluation.stats import format_p, p_label


@dataclass
class Table:
    title: str
    header: list[str]
    rows: list[list[str]]
    bold: set[tuple[int, int]] = field(default_factory=set)  # (row, column) of emphasized cells
    note: str = ""
    shade: dict[tuple[int, int], str] = field(default_factory=dict)  # (row, column) -> "better" | "worse" (HTML background)

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
            cls = f" class='{self.shade[(r, c)]}'" if (r, c) in self.shade else ""
            return f"<td{cls}><b>{t}</b></td>" if (r, c) in self.bold and text else f"<td{cls}>{t}</td>"

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


def comparison_table(comparisons: Sequence[dict[str, Any]], methods: Sequence[str], budgets: Sequence[str], metric: str,
                     title: str, digits: int = 3, reference: str = "random") -> Table:
    """Cells '+0.031 [+0.012, +0.050] d=0.45 p=0.02': mean paired difference vs the reference,
    its 95% cluster-bootstrap CI, the standardized effect size d (mean / std of the per-image
    differences) and the p-value of the same bootstrap (so CI and p never disagree). Better (CI above 0)
    is bold and shaded green, worse (CI below 0) shaded red. The reference row is omitted."""
    by = {(str(c["method"]), str(c["budget"])): c for c in comparisons if c["metric"] == metric}
    rows, bold, shade = [], set(), {}
    n_images = sorted({int(c["n_images"]) for c in by.values() if c.get("n_images")})
    for m in methods:
        if not any((m, b) in by for b in budgets):
            continue
        row = [m]
        for c, b in enumerate(budgets, start=1):
            e = by.get((m, b))
            if e is None or not e["n_pairs"]:
                row.append("")
                continue
            d = e.get("effect_size")
            d = f" d={float(d):+.2f}" if d not in (None, "") and math.isfinite(float(d)) else ""
            row.append(f"{e['mean_diff']:+.{digits}f} [{e['ci_low']:+.{digits}f}, {e['ci_high']:+.{digits}f}]{d} {p_label(e['p_value'])}")
            if e["ci_low"] > 0:
                bold.add((len(rows), c))
                shade[(len(rows), c)] = "better"
            elif e["ci_high"] < 0:
                shade[(len(rows), c)] = "worse"
        rows.append(row)
    note = (f"Mean difference over matched (test image, seed) pairs [95% bootstrap CI, test images and seeds resampled as "
            f"clusters]; d: effect size, the mean per-image difference over its standard deviation (0.2 small, 0.5 medium, 0.8 large); "
            f"p: two-sided, from the same bootstrap as the CI ({'/'.join(map(str, n_images))} test images), so p < 0.05 exactly when "
            f"the CI excludes 0; comparisons.csv adds the Holm-corrected p and a Wilcoxon test on per-image means. "
            f"Bold: better than random init (CI above 0); "
            f"in the HTML report better cells are green and worse ones (CI below 0) red.")
    return Table(title, [f"method vs {reference}"] + [f"labels: {b}" for b in budgets], rows, bold, note if rows else "", shade)


def label_savings(means: dict[tuple[str, str], float], n_labels: dict[tuple[str, str], Any], methods: Sequence[str],
                  budgets: Sequence[str], reference: str = "random") -> list[dict[str, Any]]:
    """How many labeled images the reference (random init) needs to match each method's mean
    Dice: the first crossing of the reference's Dice-vs-labels curve, linear in log(labels)
    between measured budgets.

    Rows {method, budget, labels, dice, reference_labels_needed, savings, beyond}: savings =
    needed / labels. needed is None when the method does not beat the reference's smallest
    budget (no measurable saving) or, with beyond=True, when it beats every measured budget of
    the reference (the saving is then at least largest budget / labels)."""
    ref = sorted((float(n_labels[(reference, b)]), means[(reference, b)]) for b in budgets
                 if (reference, b) in means and n_labels.get((reference, b)) and math.isfinite(means[(reference, b)]))
    out = []
    for m in methods:
        if m == reference or not ref:
            continue
        for b in budgets:
            if (m, b) not in means or not n_labels.get((m, b)) or not math.isfinite(means[(m, b)]):
                continue
            n, d = float(n_labels[(m, b)]), means[(m, b)]
            needed, beyond = None, d > max(y for _, y in ref)
            for (x0, y0), (x1, y1) in zip(ref, ref[1:]):
                if y0 < d <= y1:
                    needed = math.exp(math.log(x0) + (d - y0) / (y1 - y0) * (math.log(x1) - math.log(x0)))
                    break
            out.append({"method": m, "budget": b, "labels": n, "dice": d, "reference_labels_needed": needed,
                        "savings": needed / n if needed else None, "beyond": beyond})
    return out


def savings_table(rows: Sequence[dict[str, Any]], methods: Sequence[str], budgets: Sequence[str], reference_max: float, title: str) -> Table:
    """Cells 'x2.4 (12 labels)': the label saving of :func:`label_savings`."""
    by = {(r["method"], r["budget"]): r for r in rows}
    table_rows = []
    for m in methods:
        if not any((m, b) in by for b in budgets):
            continue
        row = [m]
        for b in budgets:
            r = by.get((m, b))
            if r is None:
                row.append("")
            elif r["beyond"]:
                row.append(f">x{reference_max / r['labels']:.1f} (> {reference_max:g} labels)")
            elif r["savings"] is None:
                row.append("none")
            else:
                row.append(f"x{r['savings']:.1f} ({r['reference_labels_needed']:.1f} labels)")
        table_rows.append(row)
    note = ("Labeled images random init needs to reach each method's mean Dice, read off random init's Dice-vs-labels curve "
            "(linear in log labels between measured budgets), as a multiple of the method's labels. 'none': not above random "
            "init at its smallest budget.")
    return Table(title, ["method"] + [f"labels: {b}" for b in budgets], table_rows, set(), note if table_rows else "")


def results_markdown(title: str, intro: Sequence[str], tables: Sequence[Table]) -> str:
    parts = [f"# {title}", "", *[f"{line}\n" for line in intro]]
    parts += [t.to_markdown() for t in tables]
    return "\n".join(parts)


__all__ = ["Table", "metric_table", "comparison_table", "label_savings", "savings_table", "results_markdown", "mean_std", "format_p"]
