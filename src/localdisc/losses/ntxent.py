"""NT-Xent (SimCLR) and its pseudo-class-masked variant (cluster-guided contrast, docs/method.md 5).

Two views per image, z1, z2: (n, D). Anchors are the 2n local embeddings; keys are the 2N
embeddings of the whole (possibly all-gathered) batch. With s_ij = cos(a_i, k_j) / tau:

    plain (SimCLR):   L_i = -log( exp(s_i,pos(i)) / sum_{j != i} exp(s_ij) )

    same_class="remove" (negatives sharing the anchor's pseudo-class y leave the denominator):
                      L_i = -log( exp(s_i,pos(i)) / sum_{j != i, j = pos(i) or y_j != y_i} exp(s_ij) )

    same_class="positive" (SupCon "L_out": same-class keys are extra positives, averaged):
                      L_i = -1/|P(i)| sum_{p in P(i)} log( exp(s_ip) / sum_{j != i} exp(s_ij) ),
                      P(i) = {j != i : y_j = y_i}  (always contains pos(i))

The loss is the mean of L_i over the 2n local anchors. With every sample in its own
pseudo-class both variants equal plain NT-Xent.

DDP: pass ``gather`` (differentiable all-gather along dim 0, see runtime/distributed.py) and the
keys become the global batch while anchors stay local; ``rank`` (default: the process-group
rank) locates the local samples among the gathered ones. Averaging the per-rank losses (DDP's
gradient mean) then gives exactly the full-batch loss and gradient.
"""

from __future__ import annotations

from typing import Callable

import torch
import torch.distributed as tdist
import torch.nn.functional as F
from torch import nn

from ..errors import TrainingError

Gather = Callable[[torch.Tensor], torch.Tensor]


def _rank() -> int:
    return tdist.get_rank() if tdist.is_available() and tdist.is_initialized() else 0


def nt_xent(
    z1: torch.Tensor,
    z2: torch.Tensor,
    tau: float = 0.1,
    labels: torch.Tensor | None = None,
    same_class: str = "remove",
    gather: Gather | None = None,
    rank: int | None = None,
) -> torch.Tensor:
    """NT-Xent over two views; ``labels`` (n,) int pseudo-classes switch on the masked variant.

    z1, z2: (n, D) projections (normalized here). Returns a float32 scalar.
    Raises :class:`TrainingError` when the pseudo-classes leave an anchor without negatives
    (the whole batch in one pseudo-class).
    """
    if z1.shape != z2.shape or z1.dim() != 2:
        raise ValueError(f"z1 and z2 must both be (n, D); got {tuple(z1.shape)} and {tuple(z2.shape)}")
    if same_class not in ("remove", "positive"):
        raise ValueError(f"same_class must be 'remove' or 'positive', got {same_class!r}")
    n = z1.shape[0]
    z1, z2 = F.normalize(z1.float(), dim=1), F.normalize(z2.float(), dim=1)
    anchors = torch.cat([z1, z2])  # (2n, D)
    if gather is not None:
        k1, k2 = gather(z1), gather(z2)
        offset = n * (_rank() if rank is None else rank)
    else:
        k1, k2, offset = z1, z2, 0
    big_n = k1.shape[0]
    keys = torch.cat([k1, k2])  # (2N, D)
    logits = anchors @ keys.T / tau  # (2n, 2N)

    ar = torch.arange(n, device=z1.device)
    self_idx = torch.cat([ar + offset, ar + big_n + offset])
    pos_idx = torch.cat([ar + big_n + offset, ar + offset])
    rows = torch.arange(2 * n, device=z1.device)
    self_mask = torch.zeros_like(logits, dtype=torch.bool)
    self_mask[rows, self_idx] = True
    neg_inf = torch.finfo(logits.dtype).min  # finite: keeps 0 * masked free of NaN
    if labels is None:
        return F.cross_entropy(logits.masked_fill(self_mask, neg_inf), pos_idx)

    labels = labels.reshape(-1).to(z1.device)
    if labels.shape[0] != n:
        raise ValueError(f"labels must hold one pseudo-class per sample ({n}), got {labels.shape[0]}")
    key_labels = gather(labels) if gather is not None else labels
    same = torch.cat([labels, labels])[:, None] == torch.cat([key_labels, key_labels])[None, :]  # (2n, 2N)
    if not (~same).any(dim=1).all():
        raise TrainingError(
            "the pseudo-classes leave no negatives: every sample of this batch has the same pseudo-class; "
            "use more pseudo-classes (--num-pseudo-classes) or a larger batch"
        )
    if same_class == "remove":
        keep = ~same
        keep[rows, pos_idx] = True
        return F.cross_entropy(logits.masked_fill(~keep, neg_inf), pos_idx)
    logits = logits.masked_fill(self_mask, neg_inf)
    log_prob = logits - torch.logsumexp(logits, dim=1, keepdim=True)
    positives = same & ~self_mask
    per_anchor = -(log_prob * positives).sum(1) / positives.sum(1)
    return per_anchor.mean()


def single_class(labels: torch.Tensor, gather: Gather | None = None) -> bool:
    """True when the (gathered) batch holds one pseudo-class only, i.e. the masked loss is undefined."""
    all_labels = gather(labels) if gather is not None else labels
    return bool((all_labels == all_labels.reshape(-1)[0]).all())


class NTXentLoss(nn.Module):
    def __init__(self, tau: float = 0.1, same_class: str = "remove", gather: Gather | None = None):
        super().__init__()
        self.tau, self.same_class, self.gather = tau, same_class, gather

    def forward(self, z1: torch.Tensor, z2: torch.Tensor, labels: torch.Tensor | None = None) -> torch.Tensor:
        return nt_xent(z1, z2, self.tau, labels, self.same_class, self.gather)


__all__ = ["nt_xent", "single_class", "NTXentLoss"]
