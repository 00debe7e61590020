"""Local Discrimination losses (docs/method.md) as pure functions.

Symbols: n views, D embedding size, K clusters, P = G^d grid cells, N pixels (voxels),
tau temperature, norm = L2 normalization. Pixel embeddings v (n, D, *S) are unit vectors,
cluster assignments a (n, K, *S) are >= 0 and sum to 1 over K.

DDP (the convention of ``train/distributed.py``): the functions taking ``gather`` (a
differentiable all-gather along dim 0, rank r's rows at [r*m, (r+1)*m)) and ``rank`` score this
process's anchors against the keys / prototypes / areas of every process and return the mean
over the local anchors, so the mean of the per-process losses (DDP's gradient average) is the
loss of one process over the concatenated outputs. ``gather=None`` is the one-process form.
"""

from __future__ import annotations

import math
from typing import Callable

import torch
import torch.nn.functional as F

Gather = Callable[[torch.Tensor], torch.Tensor]


def _rank(rank: int | None) -> int:
    if rank is not None:
        return rank
    import torch.distributed as tdist

    return tdist.get_rank() if tdist.is_available() and tdist.is_initialized() else 0


def patch_embeddings(v: torch.Tensor, grid: int) -> torch.Tensor:
    """u = norm(avg_pool(v) to a G^d grid).  v (n, D, *S) -> u (n, G^d, D), cells in raster order."""
    pooled = F.adaptive_avg_pool2d(v, grid) if v.dim() == 4 else F.adaptive_avg_pool3d(v, grid)
    return F.normalize(pooled.flatten(2).transpose(1, 2), dim=-1)


def _log1mexp(x: torch.Tensor) -> torch.Tensor:
    """log(1 - exp(x)) for x < 0, accurate everywhere (Maechler 2012); x is clamped just below 0
    so that a saturated probability gives a large finite penalty instead of -inf."""
    x = x.clamp(max=-1e-7)
    return torch.where(x > -math.log(2), torch.log(-torch.expm1(x)), torch.log1p(-torch.exp(x)))


def instance_spreading_loss(
    x: torch.Tensor,
    pos: torch.Tensor,
    tau: float,
    grad_both_sides: bool = False,
    keys: torch.Tensor | None = None,
    self_idx: torch.Tensor | None = None,
) -> torch.Tensor:
    """Instance-spreading contrastive loss over M vectors, each with one positive partner.

    x (M, D) unit vectors, pos (M,) long: index of the positive of each row (pos[i] != i).
    s_ij = x_i . x_j / tau,  P_ij = exp(s_ij) / sum_{k != i} exp(s_ik),
    L = -(1/M) sum_i [ log P_{i,pos(i)} + sum_{k not in {i, pos(i)}} log(1 - P_ik) ].
    By default the partner and the keys x_j are constants (``x_j.detach()``): only the anchor
    x_i receives gradient, as in the reference. ``grad_both_sides`` lets it flow through both.

    Split form (DDP): x (m, D) are only some anchors, ``keys`` (M, D) all M vectors (e.g.
    gathered), ``self_idx`` (m,) the row of each anchor among the keys and ``pos`` (m,) its
    positive's row among the keys. The result is the mean over these m anchors, so the mean of
    the split losses over equal-size chunks of anchors equals the unsplit loss.
    """
    m = x.shape[0]
    rows = torch.arange(m, device=x.device)
    if keys is None:
        keys, self_idx = x, rows
    elif self_idx is None:
        raise ValueError("instance_spreading_loss: keys given without self_idx (each anchor's row among the keys)")
    keys = keys if grad_both_sides else keys.detach()
    s = x @ keys.T / tau  # (m, M)
    own = torch.zeros(s.shape, dtype=torch.bool, device=x.device)
    own[rows, self_idx] = True
    s = s.masked_fill(own, float("-inf"))
    log_p = s - torch.logsumexp(s, dim=1, keepdim=True)
    positive = log_p[rows, pos]
    negatives = own.clone()
    negatives[rows, pos] = True
    log_not = _log1mexp(log_p.masked_fill(negatives, -1.0)).masked_fill(negatives, 0.0)
    return -(positive + log_not.sum(1)).mean()


def paired_contrastive_loss(
    xa: torch.Tensor,
    xb: torch.Tensor,
    tau: float,
    grad_both_sides: bool = False,
    gather: Gather | None = None,
    rank: int | None = None,
) -> torch.Tensor:
    """:func:`instance_spreading_loss` over the 2*n*P vectors {xa} U {xb}, where xa[n, p] and
    xb[n, p] (both (n, P, D)) are each other's positive and every other vector is a negative.

    With ``gather``: anchors are this process's 2nP vectors, keys the 2WnP vectors of all W
    processes in the layout [all xa (rank order), all xb (rank order)]; keys are gathered
    detached unless ``grad_both_sides``. ``rank`` defaults to the process-group rank."""
    n, P, D = xa.shape
    m = n * P
    fa, fb = xa.reshape(m, D), xb.reshape(m, D)
    x = torch.cat([fa, fb])
    if gather is None:
        pos = (torch.arange(2 * m, device=x.device) + m) % (2 * m)
        return instance_spreading_loss(x, pos, tau, grad_both_sides)
    if not grad_both_sides:  # keys are constants: gather without exchanging gradients
        fa, fb = fa.detach(), fb.detach()
    ka, kb = gather(fa), gather(fb)  # (W m, D) each
    ia = torch.arange(m, device=x.device) + _rank(rank) * m
    ib = ia + ka.shape[0]
    return instance_spreading_loss(x, torch.cat([ib, ia]), tau, grad_both_sides, keys=torch.cat([ka, kb]), self_idx=torch.cat([ia, ib]))


def patch_discrimination_loss(
    ua: torch.Tensor, ub: torch.Tensor, tau: float = 0.1, grad_both_sides: bool = False, gather: Gather | None = None, rank: int | None = None
) -> torch.Tensor:
    """L_pd. ua, ub (n, P, D): patch embeddings of views a and b of the same n images (view b
    already aligned to a); the positive of cell p of view a is cell p of view b and vice versa.
    ``gather``/``rank``: negatives from every process (:func:`paired_contrastive_loss`)."""
    return paired_contrastive_loss(ua, ub, tau, grad_both_sides, gather, rank)


def mixup_targets(u1: torch.Tensor, u2: torch.Tensor, lam: torch.Tensor) -> torch.Tensor:
    """Hypersphere mixup target t = norm(lam u(x1a) + (1 - lam) u(x2a)), detached.
    u1, u2 (B, P, D), lam (B,) -> t (B, P, D)."""
    lam = lam.view(-1, 1, 1).to(u1.dtype)
    return F.normalize(lam * u1 + (1 - lam) * u2, dim=-1).detach()


def mixup_loss(
    um: torch.Tensor, u1: torch.Tensor, u2: torch.Tensor, lam: torch.Tensor, tau: float = 0.1, grad_both_sides: bool = False,
    gather: Gather | None = None, rank: int | None = None,
) -> torch.Tensor:
    """L_mix: the contrastive form over {u(m)} U {t} (2*B*P vectors); the positive of mixup cell
    i is target cell i and vice versa. um, u1, u2 (B, P, D); lam (B,). Targets never get gradient.
    ``gather``/``rank``: mixups and targets of every process are keys (:func:`paired_contrastive_loss`)."""
    return paired_contrastive_loss(um, mixup_targets(u1, u2, lam), tau, grad_both_sides, gather, rank)


def region_embeddings(a: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """r_{n,k} = norm( sum_p a_{n,p,k} v_{n,p} / N ).  a (n, K, *S), v (n, D, *S) -> r (n, K, D).

    One batched matmul: memory O(n K D), never an (n, K, D, *S) tensor."""
    N = a[0, 0].numel()
    r = torch.bmm(a.flatten(2), v.flatten(2).transpose(1, 2)) / N
    return F.normalize(r, dim=-1)


def prototypes(r: torch.Tensor, gather: Gather | None = None) -> torch.Tensor:
    """c_k = norm( mean_n r_{n,k} ).  r (n, K, D) -> c (K, D).

    ``gather`` (differentiable): the mean runs over the r of every process, so c is the same
    everywhere and its gradient reaches every process's r."""
    if gather is not None:
        r = gather(r)
    return F.normalize(r.mean(0), dim=-1)


def region_discrimination_loss(r: torch.Tensor, c: torch.Tensor, tau: float = 0.2) -> torch.Tensor:
    """L_ld = -mean_{n,k} log( exp(r_{n,k}.c_k / tau) / sum_j exp(r_{n,k}.c_j / tau) ).
    r (n, K, D), c (K, D)."""
    logits = torch.einsum("nkd,jd->nkj", r, c) / tau
    return -torch.diagonal(torch.log_softmax(logits, dim=-1), dim1=1, dim2=2).mean()


def entropy_loss(a: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    """L_ent = mean_{n,p,k} H(a_{n,p,k}), H(q) = -q log2 q - (1-q) log2(1-q): binary entropy in
    bits, as the reference (in nats, w_ent = 0.1 would act as 0.069). a (n, K, *S); clamped to
    [eps, 1-eps] so the gradient stays finite at 0 and 1."""
    q = a.clamp(eps, 1 - eps)
    return -(q * torch.log(q) + (1 - q) * torch.log1p(-q)).mean() / math.log(2)


def balance_loss(a: torch.Tensor, gather: Gather | None = None) -> torch.Tensor:
    """Optional area prior: K * sum_k (mean_{n,p} a_{n,p,k} - 1/K)^2; 0 when clusters are equal.
    a (n, K, *S).  ``gather`` (differentiable): the areas are the mean of every process's local
    areas (equal n per process), i.e. the global area; every process returns the same value."""
    K = a.shape[1]
    area = a.transpose(0, 1).reshape(K, -1).mean(1)
    if gather is not None:
        area = gather(area[None]).mean(0)
    return K * ((area - 1.0 / K) ** 2).sum()


__all__ = [
    "patch_embeddings",
    "instance_spreading_loss",
    "paired_contrastive_loss",
    "patch_discrimination_loss",
    "mixup_targets",
    "mixup_loss",
    "region_embeddings",
    "prototypes",
    "region_discrimination_loss",
    "entropy_loss",
    "balance_loss",
]
