"""Paired comparisons for benchmarks (docs/method.md): method vs reference on matched pairs.

Two methods fine-tuned with the same seed, split and label budget are scored on the same
test images, so their per-image scores pair up by ``(image id, seed)``. The comparison is
on the per-pair differences d_i = score_method - score_reference:

- ``mean_diff`` (and its std): the average gain;
- ``p_value``: two-sided Wilcoxon signed-rank test (``scipy.stats.wilcoxon``) when there are
  at least ``min_wilcoxon`` non-zero differences; below that an exact sign-flip permutation
  test on the mean difference (all 2^n sign patterns; Monte Carlo beyond ``exact_max``),
  which is well defined for tiny n where Wilcoxon's normal approximation is not.

Pairs with a NaN on either side (e.g. HD95 of an empty prediction) are dropped and counted.

Benchmarks (:func:`compare_to_reference`) treat the TEST IMAGE as the independent unit: the
seeds of one image share its difficulty, so pooled (image, seed) pairs are not independent.
Their p-value is the paired test on per-image differences averaged over seeds, Holm-corrected
over every method x budget of a metric (``p_holm``), and ``ci_low``/``ci_high`` are a 95%
two-way cluster bootstrap of the mean difference (:func:`cluster_bootstrap_ci`: test images
and seeds are resampled, each as whole clusters).
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
        from scipy.stats import wilcoxon  # deferred: heavy optional dependency, loaded only when used

        p = float(wilcoxon(d, zero_method="wilcox", alternative="two-sided").pvalue)
        return PairedResult(int(d.size), mean, std, p, "wilcoxon", dropped)
    return PairedResult(int(d.size), mean, std, sign_flip_pvalue(d, exact_max), "permutation", dropped)


def cluster_bootstrap(diffs: np.ndarray, level: float = 0.95, samples: int = 4000, seed: int = 0) -> tuple[float, float, float]:
    """(CI low, CI high, p) of the mean of ``diffs`` (n_images, n_seeds; NaN = missing) under a
    two-way bootstrap: each resample draws images AND seeds with replacement (whole rows and
    columns), so both the test-image and the seed (label subset, initialization) variation enter.
    A third axis (n_images, n_seeds, n_pretraining_runs) is a third crossed factor, resampled the
    same way, so the variation between pretraining runs enters too.
    The CI is the percentile interval; p is two-sided from the same resamples, 2 min(P(mean* <= 0),
    P(mean* >= 0)): the CI excludes 0 exactly when p < 1 - level, so the two never disagree."""
    d = np.asarray(diffs, dtype=np.float64)
    if d.ndim not in (2, 3) or not np.isfinite(d).any():
        return math.nan, math.nan, math.nan
    rng = np.random.default_rng(seed)
    means = np.empty(samples)
    for b in range(samples):
        sub = d[np.ix_(*(rng.integers(0, n, n) for n in d.shape))]
        means[b] = np.nanmean(sub) if np.isfinite(sub).any() else np.nan
    means = np.sort(means[np.isfinite(means)])
    alpha = (1 - level) / 2
    n = means.size
    # order statistics that match the p-value's counting: lo > 0 iff fewer than alpha*n resamples are <= 0
    m = min(n - 1, max(0, math.ceil(alpha * n - 1e-9) - 1))
    lo, hi = means[m], means[n - 1 - m]
    p = min(1.0, 2 * min(float(np.mean(means <= 0)), float(np.mean(means >= 0))))
    return float(lo), float(hi), p


def cluster_bootstrap_ci(diffs: np.ndarray, level: float = 0.95, samples: int = 4000, seed: int = 0) -> tuple[float, float]:
    """The CI of :func:`cluster_bootstrap`."""
    lo, hi, _ = cluster_bootstrap(diffs, level, samples, seed)
    return lo, hi


def verdict(ci_low: float, ci_high: float) -> str:
    """helps (CI above 0) / hurts (CI below 0) / cannot tell."""
    if math.isfinite(ci_low) and ci_low > 0:
        return "helps"
    if math.isfinite(ci_high) and ci_high < 0:
        return "hurts"
    return "cannot tell"


def format_p(p: float | None) -> str:
    """A p-value for people: two significant digits, "<0.001" below that (a bootstrap p of 0 only
    means that no resample crossed 0), "n/a" when missing."""
    if p is None or not math.isfinite(p):
        return "n/a"
    return f"{p:.2g}" if p >= 0.001 else "<0.001"


def p_label(p: float | None) -> str:
    """"p=0.02", "p<0.001" or "p=n/a"."""
    text = format_p(p)
    return f"p{text}" if text.startswith("<") else f"p={text}"


def holm(p_values: Sequence[float]) -> list[float]:
    """Holm-Bonferroni adjusted p-values (same order; NaN stays NaN and is not counted)."""
    p = np.asarray(p_values, dtype=np.float64)
    ok = np.flatnonzero(np.isfinite(p))
    out = np.full(p.shape, np.nan)
    running = 0.0
    for rank, i in enumerate(ok[np.argsort(p[ok], kind="stable")]):
        running = max(running, min(1.0, (ok.size - rank) * p[i]))
        out[i] = running
    return out.tolist()


def difference_matrix(rows: Iterable[dict[str, Any]], reference: Iterable[dict[str, Any]], metric: str) -> np.ndarray:
    """(n_images, n_seeds) of method - reference on matched (image, seed); NaN where either is
    missing or not finite."""
    a, b = {}, {}
    for src, dst in ((rows, a), (reference, b)):
        for r in src:
            try:
                dst[(str(r["id"]), str(r["seed"]))] = float(r.get(metric, ""))
            except (TypeError, ValueError):
                dst[(str(r["id"]), str(r["seed"]))] = math.nan
    keys = [k for k in a if k in b]
    images = list(dict.fromkeys(k[0] for k in keys))
    seeds = list(dict.fromkeys(k[1] for k in keys))
    d = np.full((len(images), len(seeds)), np.nan)
    for i, s in keys:
        d[images.index(i), seeds.index(s)] = a[(i, s)] - b[(i, s)]
    return d


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
    """For every method != reference, every group (budget) and metric: rows {method, budget,
    metric, n_images, n_seeds, n_pairs, mean_diff, std_diff, ci_low, ci_high, p_value, p_holm,
    verdict, p_rank_test, rank_test, n_dropped}. mean_diff is over matched (image, seed) pairs;
    the CI and ``p_value`` come from the same two-way bootstrap (:func:`cluster_bootstrap`, so they
    agree), ``p_holm`` is that p Holm-corrected over all rows of one metric, ``verdict`` reads the
    CI; ``p_rank_test`` is a Wilcoxon/permutation test on per-image means over seeds (images as
    the unit), kept as a second opinion."""
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
                d = difference_matrix(rows, ref, metric)
                finite = d[np.isfinite(d)]
                per_img = np.array([np.nanmean(r) for r in d if np.isfinite(r).any()])
                res = paired_test(per_img, np.zeros_like(per_img))
                lo, hi, p_boot = cluster_bootstrap(d)
                out.append({method_key: m, group_key: g, "metric": metric, "n_images": int(per_img.size), "n_seeds": int(d.shape[1]),
                            "n_pairs": int(finite.size), "mean_diff": float(finite.mean()) if finite.size else math.nan,
                            "std_diff": float(finite.std(ddof=1)) if finite.size > 1 else math.nan, "ci_low": lo, "ci_high": hi,
                            "effect_size": float(per_img.mean() / per_img.std(ddof=1)) if per_img.size > 1 and per_img.std(ddof=1) > 0 else math.nan,
                            "p_value": p_boot, "p_rank_test": res.p_value, "rank_test": res.test, "verdict": verdict(lo, hi),
                            "n_dropped": int(d.size - finite.size)})
    for metric in metrics:
        rows = [r for r in out if r["metric"] == metric]
        for r, p in zip(rows, holm([r["p_value"] for r in rows])):
            r["p_holm"] = p
    return out


def paired_difference(a: Sequence[float] | np.ndarray, b: Sequence[float] | np.ndarray, level: float = 0.95, samples: int = 4000, seed: int = 0) -> dict[str, Any]:
    """Method a against b on the same test images: a, b are (n_images,) or (n_images, n_seeds)
    scores, matched cell by cell (NaN = missing). Returns {mean_a, mean_b, mean_diff, ci_low,
    ci_high, p_bootstrap, p_value, test, n_images, n_seeds}: the mean of d = a - b, its two-way
    cluster bootstrap CI and p (:func:`cluster_bootstrap`; with one seed a plain bootstrap over
    images), and the paired test (:func:`paired_test`) on the per-image means over seeds, the
    test image being the independent unit."""
    a2, b2 = (np.asarray(x, dtype=np.float64) for x in (a, b))
    if a2.shape != b2.shape:
        raise ValueError(f"paired scores differ in shape: {a2.shape} vs {b2.shape}")
    a2, b2 = (x.reshape(len(x), -1) for x in (a2, b2))
    d = a2 - b2
    lo, hi, p_boot = cluster_bootstrap(d, level, samples, seed)
    keep = np.isfinite(d).any(1)
    per_a, per_b = (np.array([np.nanmean(r[np.isfinite(dr)]) for r, dr in zip(x[keep], d[keep])]) for x in (a2, b2))
    test = paired_test(per_a, per_b)
    finite = np.isfinite(d)
    return {"mean_a": float(a2[finite].mean()) if finite.any() else math.nan, "mean_b": float(b2[finite].mean()) if finite.any() else math.nan,
            "mean_diff": float(d[finite].mean()) if finite.any() else math.nan, "ci_low": lo, "ci_high": hi, "p_bootstrap": p_boot,
            "p_value": test.p_value, "test": test.test, "n_images": int(keep.sum()), "n_seeds": int(d.shape[1])}


__all__ = ["PairedResult", "paired_test", "sign_flip_pvalue", "match_pairs", "compare_to_reference", "cluster_bootstrap", "cluster_bootstrap_ci",
           "verdict", "holm", "difference_matrix", "paired_difference"]
