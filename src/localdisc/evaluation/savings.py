"""Label savings with confidence intervals: how many labeled images a method needs to reach a target Dice.

The claim under test is PDCR + UAFS's "a quarter of the labels for the same Dice". The target is
the reference's (random init's) mean Dice with ALL labels, ``T = mean(reference @ largest budget)``.
For a method with mean Dice ``D(n)`` at the measured label counts ``n_1 < ... < n_K``, the labels it
needs are the first crossing of ``T`` on its Dice-vs-labels curve, linear in ``log n`` between
measured budgets::

    needed = exp(log n_j + (T - D_j) / (D_{j+1} - D_j) * (log n_{j+1} - log n_j))

and the saving is ``n_K / needed`` (2.0: half the labels for the same Dice). Two cases are censored:
a method already at ``T`` with its smallest budget needs *at most* ``n_1`` (saving at least
``n_K / n_1``), and one that never reaches ``T`` needs *more than* ``n_K`` (no saving).

The CI is a two-way cluster bootstrap, as in :mod:`localdisc.evaluation.stats`: each resample draws
test images and seeds with replacement, recomputes every curve and the target, and reads the labels
off again; the percentile interval of ``needed`` gives the CI of the saving.
"""

from __future__ import annotations

import math
import warnings
from typing import Any, Sequence

import numpy as np


def labels_to_reach(curve: Sequence[tuple[float, float]], target: float) -> tuple[float, str]:
    """(labels, status) at which ``curve`` [(labels, dice), ...] first reaches ``target``.

    status: ``reached`` (interpolated, linear in log labels), ``at_most`` (already reached at
    the smallest budget; labels = that budget) or ``never`` (labels = inf)."""
    pts = sorted((float(n), float(d)) for n, d in curve if math.isfinite(d) and n > 0)
    if not pts or not math.isfinite(target):
        return math.inf, "never"
    if pts[0][1] >= target:
        return pts[0][0], "at_most"
    for (x0, y0), (x1, y1) in zip(pts, pts[1:]):
        if y0 < target <= y1:
            return math.exp(math.log(x0) + (target - y0) / (y1 - y0) * (math.log(x1) - math.log(x0))), "reached"
    return math.inf, "never"


def score_cube(per_image: Sequence[dict[str, Any]], methods: Sequence[str], budgets: Sequence[str],
               metric: str = "dice_mean") -> tuple[np.ndarray, list[str], list[str]]:
    """(n_methods, n_budgets, n_images, n_seeds) of ``metric`` (NaN = missing), with the image ids
    and seeds it is indexed by: every cell is scored on the same test images, so one index serves all."""
    images = list(dict.fromkeys(str(r["id"]) for r in per_image))
    seeds = list(dict.fromkeys(str(r["seed"]) for r in per_image))
    mi, bi = {m: i for i, m in enumerate(methods)}, {str(b): i for i, b in enumerate(budgets)}
    ii, si = {k: i for i, k in enumerate(images)}, {k: i for i, k in enumerate(seeds)}
    cube = np.full((len(methods), len(budgets), len(images), len(seeds)), np.nan)
    for r in per_image:
        m, b = str(r["method"]), str(r["budget"])
        if m in mi and b in bi:
            try:
                cube[mi[m], bi[b], ii[str(r["id"])], si[str(r["seed"])]] = float(r.get(metric, ""))
            except (TypeError, ValueError):
                pass
    return cube, images, seeds


def _require_complete(per_image: Sequence[dict[str, Any]], methods: Sequence[str], budgets: Sequence[str]) -> None:
    """Every (method, budget) cell scored on the same (test image, seed) pairs: a resample that
    misses a cell's only seed would otherwise make its mean, and the target, NaN."""
    keys: dict[tuple[str, str], set] = {(m, str(b)): set() for m in methods for b in budgets}
    for r in per_image:
        if (str(r["method"]), str(r["budget"])) in keys:
            keys[(str(r["method"]), str(r["budget"]))].add((str(r["id"]), str(r["seed"])))
    union = set().union(*keys.values())
    partial = [f"{m} @ {b} ({len(k)} of {len(union)})" for (m, b), k in keys.items() if k != union]
    if partial:
        raise ValueError(f"cells not scored on every (test image, seed) pair: {', '.join(partial)}")


def _needed(means: np.ndarray, labels: Sequence[float], ref: int) -> list[tuple[float, str]]:
    """Per method, labels to reach the reference's mean at its largest budget. means: (methods, budgets)."""
    target = means[ref, int(np.argmax(labels))]
    return [labels_to_reach(list(zip(labels, row)), target) for row in means]


def label_savings(per_image: Sequence[dict[str, Any]], methods: Sequence[str], budgets: Sequence[str],
                  n_labels: Sequence[float], reference: str = "random", metric: str = "dice_mean",
                  level: float = 0.95, samples: int = 2000, seed: int = 0) -> list[dict[str, Any]]:
    """Rows {method, target, needed, status, savings, needed_low, needed_high, savings_low,
    savings_high, p_two_fold}: labels each method needs to reach the reference's Dice with all
    labels (``n_labels`` per budget; the largest is "all"), the saving ``n_all / needed``, its
    ``level`` bootstrap CI, and the share of resamples whose saving is below 2x (a one-sided p for
    "at least a 2x saving"; always 1 when all labels are under twice the smallest budget).
    Censored values: ``needed`` = the smallest budget for ``at_most`` (the saving is then a lower
    bound, and so is the CI's upper end when resamples reach the target there), inf for ``never``
    (saving 0). Every (method, budget) cell must hold the same (test image, seed) pairs."""
    methods = list(methods)
    if reference not in methods:
        raise ValueError(f"reference {reference!r} is not among the methods {methods}")
    if samples < 1:
        raise ValueError(f"samples must be >= 1, got {samples}")
    _require_complete(per_image, methods, budgets)
    labels = [float(n) for n in n_labels]
    n_all, ref = max(labels), methods.index(reference)
    cube, _, _ = score_cube(per_image, methods, budgets, metric)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # "mean of empty slice": cells a method does not have
        means = np.nanmean(cube, axis=(2, 3))
        point = _needed(means, labels, ref)
        rng = np.random.default_rng(seed)
        n_img, n_seed = cube.shape[2], cube.shape[3]
        boot = np.empty((samples, len(methods)))
        for b in range(samples):
            sub = cube[:, :, rng.integers(0, n_img, n_img)][:, :, :, rng.integers(0, n_seed, n_seed)]
            boot[b] = [n for n, _ in _needed(np.nanmean(sub, axis=(2, 3)), labels, ref)]
    alpha = (1 - level) / 2
    rows = []
    for k, m in enumerate(methods):
        needed, status = point[k]
        lo, hi = np.quantile(boot[:, k], [alpha, 1 - alpha], method="inverted_cdf")
        rows.append({"method": m, "target": float(means[ref, int(np.argmax(labels))]), "needed": needed, "status": status,
                     "savings": n_all / needed, "needed_low": float(lo), "needed_high": float(hi),
                     "savings_low": n_all / float(hi), "savings_high": n_all / float(lo),
                     "p_two_fold": float(np.mean(n_all / boot[:, k] < 2.0))})
    return rows


__all__ = ["labels_to_reach", "score_cube", "label_savings"]
