"""Step-indexed batch sampling: batch ``t`` depends only on (seed, t), never on history.

This makes runs repeatable, resumable at any step, and independent of the number of
DDP processes (each rank takes its slice of the global batch).
"""

from __future__ import annotations

import torch
from torch.utils.data import Sampler


def batch_indices(n: int, batch_size: int, seed: int, step: int) -> list[int]:
    """Global batch for ``step``: a slice of a per-epoch permutation (without replacement)."""
    per_epoch = max(1, n // batch_size) if n >= batch_size else 1
    epoch, pos = divmod(step, per_epoch)
    g = torch.Generator().manual_seed(seed * 1_000_003 + epoch)
    if n >= batch_size:
        perm = torch.randperm(n, generator=g)
        return perm[pos * batch_size : (pos + 1) * batch_size].tolist()
    return torch.randint(n, (batch_size,), generator=g).tolist()


class StepBatchSampler(Sampler[list[int]]):
    """Yields this rank's share of the global batch for steps start..total-1."""

    def __init__(self, n: int, batch_size: int, seed: int, start: int, total: int, rank: int = 0, world: int = 1):
        if batch_size % world:
            raise ValueError(f"global batch size {batch_size} must be divisible by the number of processes {world}")
        self.n, self.batch_size, self.seed, self.start, self.total = n, batch_size, seed, start, total
        self.rank, self.world = rank, world

    def __len__(self) -> int:
        return max(0, self.total - self.start)

    def __iter__(self):
        share = self.batch_size // self.world
        for step in range(self.start, self.total):
            idx = batch_indices(self.n, self.batch_size, self.seed, step)
            yield idx[self.rank * share : (self.rank + 1) * share]
