"""Receptive fields of every U-Net layer, computed from the architecture (docs/method.md).

PDCR maps each sampled feature vector to the center of its receptive field in input
coordinates. The U-Net is separable per axis (conv3 padding 1, max-pool 2 with ceil_mode,
nearest up-sampling x2, concatenation), so one axis is analysed at a time.

On an unbounded axis the receptive field (RF) of feature position ``i`` of a layer is

    RF(i) = [stride * i + lo[i % period], stride * i + hi[i % period]]

Encoder layers have ``period == 1``. Nearest up-sampling makes decoder RFs depend on the
parity of ``i`` (fine position ``i`` reads coarse position ``i // 2``), so decoder layers keep
one ``(lo, hi)`` per residue. Propagation rules (``s`` = stride, tables indexed by residue r):

- conv3:     lo'[r] = min_k (s*k + lo[(r+k) % P]),  hi' likewise with max, k in {-1, 0, 1}
- pool2:     s' = 2s, P' = max(P // 2, 1), RF'(i) = RF(2i) U RF(2i+1)
- upsample:  s' = s/2, P' = 2P, lo'[r] = -s' * (r % 2) + lo[(r // 2) % P]
- concat:    union of both paths (same stride): elementwise min of lo, max of hi
- UAFS gate: one more conv3 (its entropy head reads a 3-neighbourhood)

On a finite axis of length n with zero padding the RF is exactly ``RF(i) ∩ [0, n-1]``
(RFs are monotone in i and the first/last positions always see the first/last pixel), and
nearest interpolation to an odd skip size is still ``i // 2``. Both facts are checked
against gradients of a real network in tests/nets/test_receptive_field.py.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np


@dataclass(frozen=True)
class AxisRF:
    """Receptive field along one axis of an unbounded input: see the module docstring."""

    stride: int
    lo: tuple[int, ...]  # per residue i % period, relative to stride * i
    hi: tuple[int, ...]

    @property
    def period(self) -> int:
        return len(self.lo)

    @property
    def offset(self) -> tuple[float, ...]:
        """center(i) = stride * i + offset[i % period]."""
        return tuple((a + b) / 2 for a, b in zip(self.lo, self.hi))

    @property
    def size(self) -> int:
        """Largest RF extent (in input pixels) over residues."""
        return max(b - a + 1 for a, b in zip(self.lo, self.hi))

    def reduced(self) -> "AxisRF":
        """The same field with the shortest period (tables that repeat are halved)."""
        lo, hi = self.lo, self.hi
        while len(lo) > 1 and lo[: len(lo) // 2] == lo[len(lo) // 2 :] and hi[: len(hi) // 2] == hi[len(hi) // 2 :]:
            lo, hi = lo[: len(lo) // 2], hi[: len(hi) // 2]
        return AxisRF(self.stride, lo, hi)

    def _tables(self, period: int) -> tuple[np.ndarray, np.ndarray]:
        reps = period // self.period
        return np.tile(np.array(self.lo), reps), np.tile(np.array(self.hi), reps)

    def conv3(self) -> "AxisRF":
        lo, hi = np.array(self.lo), np.array(self.hi)
        r = np.arange(self.period)
        new_lo = np.min([self.stride * k + lo[(r + k) % self.period] for k in (-1, 0, 1)], axis=0)
        new_hi = np.max([self.stride * k + hi[(r + k) % self.period] for k in (-1, 0, 1)], axis=0)
        return AxisRF(self.stride, tuple(int(v) for v in new_lo), tuple(int(v) for v in new_hi)).reduced()

    def pool2(self) -> "AxisRF":
        lo, hi = np.array(self.lo), np.array(self.hi)
        period = max(self.period // 2, 1)
        r = np.arange(period)
        even, odd = (2 * r) % self.period, (2 * r + 1) % self.period
        new_lo = np.minimum(lo[even], self.stride + lo[odd])
        new_hi = np.maximum(hi[even], self.stride + hi[odd])
        return AxisRF(2 * self.stride, tuple(int(v) for v in new_lo), tuple(int(v) for v in new_hi))

    def upsample2(self) -> "AxisRF":
        fine = self.stride // 2
        r = np.arange(2 * self.period)
        lo, hi = np.array(self.lo), np.array(self.hi)
        coarse = (r // 2) % self.period
        shift = -fine * (r % 2)
        return AxisRF(fine, tuple(int(v) for v in shift + lo[coarse]), tuple(int(v) for v in shift + hi[coarse]))

    def union(self, other: "AxisRF") -> "AxisRF":
        assert self.stride == other.stride, "concatenated maps must share a stride"
        period = max(self.period, other.period)  # powers of two: the larger is the lcm
        lo_a, hi_a = self._tables(period)
        lo_b, hi_b = other._tables(period)
        lo, hi = np.minimum(lo_a, lo_b), np.maximum(hi_a, hi_b)
        return AxisRF(self.stride, tuple(int(v) for v in lo), tuple(int(v) for v in hi)).reduced()

    def positions(self, n_input: int, n_feature: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """For feature positions 0..n_feature-1 on an input axis of length n_input:
        (center float64 (unclipped RF center), lo int64, hi int64 (RF clipped to the image))."""
        i = np.arange(n_feature)
        lo = self.stride * i + np.array(self.lo)[i % self.period]
        hi = self.stride * i + np.array(self.hi)[i % self.period]
        return (lo + hi) / 2.0, np.clip(lo, 0, n_input - 1), np.clip(hi, 0, n_input - 1)


def layer_names(depth: int) -> list[str]:
    """Layer names of a U-Net with ``depth`` encoder scales: encoder.0.., decoder.0.."""
    return [f"encoder.{i}" for i in range(depth)] + [f"decoder.{j}" for j in range(depth - 1)]


@lru_cache(maxsize=64)
def axis_receptive_fields(depth: int, uafs_stages: tuple[int, ...] = ()) -> dict[str, AxisRF]:
    """Unbounded-axis RF of every layer of a U-Net with ``depth`` encoder scales (cached)."""
    out: dict[str, AxisRF] = {}
    h = AxisRF(1, (0,), (0,))
    for i in range(depth):
        if i > 0:
            h = h.pool2()
        h = h.conv3().conv3()
        out[f"encoder.{i}"] = h
    for j in range(depth - 1):
        h = h.upsample2().union(out[f"encoder.{depth - 2 - j}"]).conv3().conv3()
        if j in uafs_stages:
            h = h.conv3()
        out[f"decoder.{j}"] = h
    return out


def layer_level(name: str, depth: int) -> int:
    """Scale level of a layer (0 = full resolution); raises ValueError for unknown names."""
    part, _, idx = name.partition(".")
    if part in ("encoder", "decoder") and idx.isdigit():
        k = int(idx)
        if part == "encoder" and k < depth:
            return k
        if part == "decoder" and k < depth - 1:
            return depth - 2 - k
    raise ValueError(f"unknown layer {name!r}; valid: {', '.join(layer_names(depth))}")


def feature_size(n: int, level: int) -> int:
    """Axis length after ``level`` ceil-mode poolings (decoders interpolate to the skip size)."""
    for _ in range(level):
        n = -(-n // 2)
    return n


@lru_cache(maxsize=256)
def layer_positions(depth: int, uafs_stages: tuple[int, ...], layer: str, input_shape: tuple[int, ...]):
    """Per axis (center, lo, hi) numpy arrays over the feature positions of ``layer`` for an
    input of spatial shape ``input_shape`` (cached). See :meth:`AxisRF.positions`."""
    rf = axis_receptive_fields(depth, tuple(uafs_stages))[layer]
    level = layer_level(layer, depth)
    return tuple(rf.positions(n, feature_size(n, level)) for n in input_shape)


def receptive_fields(config) -> dict[str, AxisRF]:
    """RF of every layer of a :class:`~localdisc.nets.unet.UNetConfig` (same along every axis)."""
    return axis_receptive_fields(len(config.encoder_channels), tuple(config.uafs_stages))
