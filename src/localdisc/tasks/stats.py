"""Paired comparisons for benchmarks (SPEC section 8): method vs reference on matched pairs.

Two methods fine-tuned with the same seed, split and label budget are scored on the same
test images, so their per-image scores pair up by ``(image id, seed)``. The comparison is
on the per-pair differences d_i = score_method - score_reference:

- ``mean_diff`` (and its std): the average gain;
- ``p_value``: two-sided Wilcoxon signed-rank test (``scipy.stats.wilcoxon``) when there are
  at least ``min_wilcoxon`` non-zero differences; below that an exact sign-flip permutation
  test on the mean difference (all 2^n sign patterns; Monte Carlo beyond ``exact_max``),
  which is well defined for tiny n where Wilcoxon's normal approximation is not.

Pairs with a NaN on either side (e.g. HD95 of an empty prediction) are dropped and counted.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import asdict, dataclass
from typing import Any, Iterable, Sequence

import numpy as np


@dataclass
class PairedResult:
    n: int  # pairs used (both finite)
    mean_diff: float  # mean of (a - b)
    std_diff: float
    p_value: float  # two-sided; 1.0 when every difference is zero, NaN when n == 0
    test: str  # "wilcoxon" | "permutation" | "none"
    n_dropped: int = 0  # pairs with a NaN on either side

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def sign_flip_pvalue(diffs: Sequence[float], exact_max: int = 16, samples: int = 20000, seed: int = 0) -> float:
    """Two-sided paired permutation test: P(|mean(s * d)| >= |mean(d)|) over random signs s.

    Exact enumeration of all 2^n sign patterns for n <= ``exact_max``; otherwise Monte Carlo
    with ``samples`` draws (the observed pattern counted once, so p > 0).
    """
    d = np.asarray(diffs, dtype=np.float64)
    n = d.size
    if n == 0:
        return math.nan
    observed = abs(d.mean())
    tol = 1e-12 * max(1.0, float(np.abs(d).max()))
    if n <= exact_max:
        signs = np.array(list(itertools.product((1.0, -1.0), repeat=n)))
        stats = np.abs(signs @ d) / n
        return float(np.mean(stats >= observed - tol))
    rng = np.random.default_rng(seed)
    signs = rng.choice((1.0, -1.0), size=(samples, n))
    stats = np.abs(signs @ d) / n
    return float((1 + np.sum(stats >= observed - tol)) / (samples + 1))


def paired_test(a: Sequence[float], b: Sequence[float], min_wilcoxon: int = 6, exact_max: int = 16) -> PairedResult:
    """Compare matched scores a[i] vs b[i] (same image, same seed). See the module docstring."""
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    if a.shape != b.shape:
        raise ValueError(f"paired samples differ in length: {a.shape} vs {b.shape}")
    ok = np.isfinite(a) & np.isfinite(b)
    d = a[ok] - b[ok]
    dropped = int((~ok).sum())
    if d.size == 0:
        return PairedResult(0, math.nan, math.nan, math.nan, "none", dropped)
    mean, std = float(d.mean()), float(d.std(ddof=1)) if d.size > 1 else 0.0
    nonzero = d[d != 0]
    if nonzero.size == 0:
        return PairedResult(int(d.size), mean, std, 1.0, "none", dropped)
    if nonzero.size >= min_wilcoxon:
        from scipy.stats import wilcoxon

        p = float(wilcoxon(d, zero_method="wilcox", alternative="two-sided").pvalue)
        return PairedResult(int(d.size), mean, std, p, "wilcoxon", dropped)
    return PairedResult(int(d.size), mean, std, sign_flip_pvalue(d, exact_max), "permutation", dropped)


def match_pairs(rows: Iterable[dict[str, Any]], reference: Iterable[dict[str, Any]], metric: str,
                keys: tuple[str, ...] = ("id", "seed")) -> tuple[np.ndarray, np.ndarray]:
    """Align two lists of per-image rows on ``keys``; returns (method values, reference values).

    Only keys present on both sides are used (so a missing cell never silently pairs wrong
    images); values are converted with float (empty strings become NaN).
    """
    def value(r: dict[str, Any]) -> float:
        v = r.get(metric, "")
        try:
            return float(v)
        except (TypeError, ValueError):
            return math.nan

    ref = {tuple(str(r[k]) for k in keys): value(r) for r in reference}
    a, b = [], []
    for r in rows:
        key = tuple(str(r[k]) for k in keys)
        if key in ref:
            a.append(value(r))
            b.append(ref[key])
    return np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)


def compare_to_reference(per_image: Sequence[dict[str, Any]], metrics: Sequence[str], reference: str = "random",
                         method_key: str = "method", group_key: str = "budget") -> list[dict[str, Any]]:
    """For every method != reference, every group (budget) and metric: a paired test over the
    matched (image, seed) pairs. Returns rows {method, budget, metric, n, mean_diff, std_diff,
    p_value, test, n_dropped}."""
    by: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for r in per_image:
        by.setdefault((str(r[method_key]), str(r[group_key])), []).append(r)
    out = []
    methods = list(dict.fromkeys(str(r[method_key]) for r in per_image))
    groups = list(dict.fromkeys(str(r[group_key]) for r in per_image))
    for m in methods:
        if m == reference:
            continue
        for g in groups:
            rows, ref = by.get((m, g), []), by.get((reference, g), [])
            if not rows or not ref:
                continue
            for metric in metrics:
                a, b = match_pairs(rows, ref, metric)
                res = paired_test(a, b)
                out.append({method_key: m, group_key: g, "metric": metric, **res.as_dict()})
    return out


__all__ = ["PairedResult", "paired_test", "sign_flip_pvalue", "match_pairs", "compare_to_reference"]
