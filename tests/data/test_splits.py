"""Splits: determinism, order independence, nesting of label budgets, validation from train only."""

from __future__ import annotations

import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from localdisc.data.records import Sample
from localdisc.data.splits import assign_splits, carve_validation, label_budget
from localdisc.errors import ConfigError, DataError


def make(n, split="train", **extra):
    return [Sample(id=f"s{i:03d}", image=f"/x/s{i:03d}.png", split=split, extra=dict(extra)) for i in range(n)]


def ids(samples):
    return [s.id for s in samples]


@settings(max_examples=40, deadline=None)
@given(n=st.integers(2, 60), seed=st.integers(0, 10**6), a=st.integers(1, 60), b=st.integers(1, 60), shuffle=st.integers(0, 99))
def test_label_budget_nested_deterministic_order_free(n, seed, a, b, shuffle):
    a, b = sorted((min(a, n), min(b, n)))
    train = make(n)
    small, large = label_budget(train, a, seed), label_budget(train, b, seed)
    assert len(small) == a and len(large) == b
    assert set(ids(small)) <= set(ids(large))
    shuffled = train[:]
    random.Random(shuffle).shuffle(shuffled)
    assert set(ids(label_budget(shuffled, a, seed))) == set(ids(small))
    assert ids(small) == [i for i in ids(train) if i in set(ids(small))]  # input order kept


@settings(max_examples=30, deadline=None)
@given(n=st.integers(1, 50), seed=st.integers(0, 1000), f=st.floats(0.01, 0.99), g=st.floats(0.01, 0.99))
def test_fraction_budgets_nested(n, seed, f, g):
    f, g = sorted((f, g))
    train = make(n)
    small, large = label_budget(train, f, seed), label_budget(train, g, seed)
    assert 1 <= len(small) <= len(large) <= n and set(ids(small)) <= set(ids(large))
    assert len(small) == max(1, round(f * n))
    assert len(label_budget(train, 1.0, seed)) == n


def test_budget_depends_on_seed_and_errors():
    train = make(40)
    assert ids(label_budget(train, 5, 0)) != ids(label_budget(train, 5, 1))
    for bad in (0, -3, 0.0, 41, 2.5, True):
        with pytest.raises(ConfigError):
            label_budget(train, bad, 0)
    with pytest.raises(ConfigError, match="exceeds the 40"):
        label_budget(train, 41, 0)
    with pytest.raises(DataError, match="duplicate sample ids"):
        label_budget(train + make(1), 2, 0)


@settings(max_examples=30, deadline=None)
@given(n=st.integers(2, 50), seed=st.integers(0, 1000), frac=st.floats(0.01, 0.9))
def test_carve_validation(n, seed, frac):
    train_in = make(n)
    train, val = carve_validation(train_in, frac, seed)
    assert len(val) == min(max(1, round(frac * n)), n - 1)
    assert sorted(ids(train) + ids(val)) == ids(train_in) and not set(ids(train)) & set(ids(val))
    assert {s.split for s in train} == {"train"} and {s.split for s in val} == {"val"}
    assert ids(carve_validation(train_in[::-1], frac, seed)[1])[::-1] == ids(val)
    assert all(s.split == "train" for s in train_in)  # inputs are not mutated


def test_carve_validation_counts_and_errors():
    train_in = make(10)
    train, val = carve_validation(train_in, 3, 7)
    assert (len(train), len(val)) == (7, 3)
    assert carve_validation(train_in, 0, 7)[1] == []
    with pytest.raises(DataError, match="carved from training images.*test"):
        carve_validation(train_in + [Sample(id="t", image="t.png", split="test")], 2, 0)
    with pytest.raises(ConfigError, match="leaves no training images"):
        carve_validation(train_in, 10, 0)
    with pytest.raises(ConfigError):
        carve_validation(train_in, -1, 0)


def test_assign_splits():
    fixed = make(5, split="test")
    free = make(100, split=None)
    for i, s in enumerate(free):
        s.id = f"f{i:03d}"
        s.extra["diagnosis"] = i % 4
    out = assign_splits(fixed + free, seed=3, val_fraction=0.2, test_fraction=0.1)
    assert ids(out) == ids(fixed + free)
    assert [s.split for s in out[:5]] == ["test"] * 5
    got = {k: sum(s.split == k for s in out[5:]) for k in ("train", "val", "test")}
    assert got == {"train": 70, "val": 20, "test": 10}
    assert [s.split for s in assign_splits(fixed + free, seed=3, val_fraction=0.2, test_fraction=0.1)] == [s.split for s in out]
    assert [s.split for s in assign_splits(free, seed=4)] != [s.split for s in assign_splits(free, seed=3)]
    assert all(s.split is None for s in free)
    strat = assign_splits(free, seed=0, val_fraction=0.2, stratify="diagnosis")
    for d in range(4):
        assert sum(s.split == "val" and s.extra["diagnosis"] == d for s in strat) == 5
    assert [s.split for s in assign_splits(make(1, split=None), seed=0)] == ["train"]
    with pytest.raises(ConfigError):
        assign_splits(free, seed=0, val_fraction=0.6, test_fraction=0.5)
