"""Seeded splits and label budgets.

Rules that keep benchmarks honest:

- validation images are carved out of ``train`` (:func:`carve_validation`), never out of
  ``test``: passing a test sample raises;
- every choice ranks samples by a hash of ``(seed, id)``, so it depends only on the seed and
  the sample ids (not on input order, and adding images does not reshuffle the others);
- label budgets are nested: for one seed, the images of a smaller budget are a subset of those
  of a larger one, so "10 labels vs 20 labels" compares paired runs.
"""

from __future__ import annotations

import dataclasses
import hashlib
from typing import Callable

from ..errors import ConfigError, DataError
from .records import Sample


def _rank(seed: int, sid: str) -> int:
    return int.from_bytes(hashlib.sha256(f"{seed}\0{sid}".encode()).digest()[:8], "big")


def seeded_order(samples: list[Sample], seed: int) -> list[Sample]:
    """Samples in a pseudo-random order that depends only on (seed, id); ids must be unique."""
    ids = [s.id for s in samples]
    if len(set(ids)) != len(ids):
        dup = sorted({i for i in ids if ids.count(i) > 1})[:5]
        raise DataError(f"duplicate sample ids {dup}: ids must be unique to split deterministically")
    return sorted(samples, key=lambda s: (_rank(seed, s.id), s.id))


def _count(n: int, amount: float | int, what: str) -> int:
    """Fraction in [0, 1) of n (rounded, at least 1 when > 0) or an absolute count."""
    if isinstance(amount, bool) or amount < 0:
        raise ConfigError(f"{what} must be >= 0, got {amount!r}")
    if isinstance(amount, float) and amount < 1:
        return 0 if amount == 0 else max(1, round(amount * n))
    if float(amount) != int(amount):
        raise ConfigError(f"{what} must be a fraction in [0, 1) or a whole count, got {amount!r}")
    return int(amount)


def _with_split(s: Sample, split: str) -> Sample:
    return dataclasses.replace(s, split=split, extra=dict(s.extra))


def assign_splits(
    samples: list[Sample],
    seed: int,
    val_fraction: float = 0.2,
    test_fraction: float = 0.0,
    stratify: str | Callable[[Sample], object] | None = None,
) -> list[Sample]:
    """Give samples whose ``split`` is None a split (train/val/test); others are kept.

    ``stratify``: an ``extra`` key (e.g. "diagnosis") or a function of the sample; each stratum
    is split with the same fractions. Returns new Sample objects in the input order.
    """
    if not (0 <= val_fraction < 1 and 0 <= test_fraction < 1 and val_fraction + test_fraction < 1):
        raise ConfigError(f"val_fraction={val_fraction} and test_fraction={test_fraction} must be in [0, 1) and sum below 1")
    free = [s for s in samples if s.split is None]
    key = (lambda s: s.extra.get(stratify)) if isinstance(stratify, str) else (stratify or (lambda s: None))
    strata: dict[str, list[Sample]] = {}
    for s in free:
        strata.setdefault(repr(key(s)), []).append(s)
    chosen: dict[str, str] = {}
    for group in strata.values():
        order = seeded_order(group, seed)
        n = len(order)
        n_test = round(test_fraction * n)
        n_val = min(round(val_fraction * n), n - n_test - 1) if n > 1 else 0
        for i, s in enumerate(order):
            chosen[s.id] = "test" if i < n_test else "val" if i < n_test + n_val else "train"
    return [_with_split(s, chosen[s.id]) if s.split is None else s for s in samples]


def carve_validation(train_samples: list[Sample], fraction_or_count: float | int, seed: int) -> tuple[list[Sample], list[Sample]]:
    """Split training samples into (train, val): a fraction in [0, 1) or a count of images.

    Validation comes from train only; a sample marked ``test`` raises :class:`DataError`.
    A fraction is rounded (at least 1 image, at most all but one); a count larger than
    ``len - 1`` raises. Both lists keep the input order.
    """
    bad = [s.id for s in train_samples if s.split == "test"]
    if bad:
        raise DataError(f"validation must be carved from training images, but {len(bad)} test image(s) were given, e.g. {bad[:5]}")
    n = len(train_samples)
    k = _count(n, fraction_or_count, "validation size")
    if isinstance(fraction_or_count, float) and n >= 2:
        k = min(k, n - 1)  # a fraction never takes the last training image
    if k >= n and k > 0:
        raise ConfigError(f"validation size {fraction_or_count!r} leaves no training images (only {n} available)")
    val_ids = {s.id for s in seeded_order(train_samples, seed)[:k]}
    train = [_with_split(s, "train") for s in train_samples if s.id not in val_ids]
    val = [_with_split(s, "val") for s in train_samples if s.id in val_ids]
    return train, val


def label_budget(train_samples: list[Sample], labels: int | float, seed: int) -> list[Sample]:
    """The labeled subset for a budget: int >= 1 = that many images, float in (0, 1) = fraction
    (rounded, at least 1); 1.0 = all. Nested across budgets for one seed; keeps input order."""
    n = len(train_samples)
    if isinstance(labels, bool) or labels <= 0:
        raise ConfigError(f"label budget must be > 0, got {labels!r}")
    if isinstance(labels, float) and labels <= 1:
        k = n if labels == 1 else max(1, round(labels * n))
    elif float(labels) != int(labels):
        raise ConfigError(f"label budget must be a whole number of images or a fraction in (0, 1], got {labels!r}")
    else:
        k = int(labels)
    if k > n:
        raise ConfigError(f"label budget {labels!r} exceeds the {n} labeled training images available")
    keep = {s.id for s in seeded_order(train_samples, seed)[:k]}
    return [s for s in train_samples if s.id in keep]
