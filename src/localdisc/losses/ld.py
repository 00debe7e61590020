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
import torch.distributed as tdist
import torch.nn.functional as F

Gather = Callable[[torch.Tensor], torch.Tensor]


def _rank(rank: int | None) -> int:
    if rank is not None:
        return rank
    return tdist.get_rank() if tdist.is_available() and tdist.is_initialized() else 0


def pooling_matrix(size: int, grid: int, shifts: torch.Tensor | None = None, dtype=torch.float32, device=None) -> torch.Tensor:
    """Adaptive average pooling of one axis of length S into G cells, as a matrix.

    Cell c covers pixels [floor(c S / G), ceil((c + 1) S / G)), as ``F.adaptive_avg_pool``:
    W[c, p] = 1 / |cell c| for p in cell c, else 0; (G, S). With ``shifts`` (n,) integer: one
    matrix per sample (n, G, S) for the map first rolled back by its shift (``torch.roll(x, -s)``:
    pixel p counts in the cell of (p - s) mod S), so a cyclic roll costs nothing: it only permutes
    the columns."""
    c = torch.arange(grid, device=device)
    start, end = (c * size) // grid, -((-(c + 1) * size) // grid)
    p = torch.arange(size, device=device)
    if shifts is not None:
        p = (p[None, :] - shifts.to(device=device, dtype=torch.long)[:, None]) % size  # (n, S)
    inside = (p[..., None, :] >= start[:, None]) & (p[..., None, :] < end[:, None])  # (..., G, S)
    return inside.to(dtype) / (end - start).to(dtype)[:, None]


def cell_means(v: torch.Tensor, grid: int, shifts: torch.Tensor | None = None) -> torch.Tensor:
    """Average pooling of v (n, D, *S) to a G^d grid -> (n, D, G, ..., G), equal to
    ``F.adaptive_avg_pool{2,3}d(v, G)`` up to float rounding.

    Separable: the mean over a block is the mean over each axis in turn, so the pooling is d
    small matmuls (the last axis first, which shrinks the data most), not a full-size pooling
    kernel; backward is the same matmuls transposed (one full-size write). With ``shifts``
    (n, d) integer, sample i is first rolled back by shifts[i] (the inverse of
    ``methods.augment.roll_samples``) for free (:func:`pooling_matrix`); no rolled copy of v."""
    n, _, *S = v.shape
    x = v
    for axis in reversed(range(len(S))):
        size = x.shape[-1]  # the axis to pool always sits last (moved there below)
        if shifts is None:
            y = x.reshape(-1, size) @ pooling_matrix(size, grid, dtype=v.dtype, device=v.device).T
        else:
            W = pooling_matrix(size, grid, shifts[:, axis], dtype=v.dtype, device=v.device)  # (n, G, S_axis)
            y = torch.bmm(x.reshape(n, -1, size), W.transpose(1, 2))
        # (n, D, S_0..S_{axis-1}, [G..], G): the new cell axis moves in front of the remaining
        # spatial axes, so after d steps the cell axes are back in the original order
        x = y.reshape(*x.shape[:-1], grid).movedim(-1, 2)
    return x


def patch_embeddings(v: torch.Tensor, grid: int, shifts: torch.Tensor | None = None) -> torch.Tensor:
    """u = norm(avg_pool(v) to a G^d grid).  v (n, D, *S) -> u (n, G^d, D), cells in raster order.
    ``shifts`` (n, d): pool each map rolled back by its shift (:func:`cell_means`)."""
    return F.normalize(cell_means(v, grid, shifts).flatten(2).transpose(1, 2), dim=-1)


_LOG1MEXP_CLAMP = -1e-7


def _log1mexp(x: torch.Tensor) -> torch.Tensor:
    """log(1 - exp(x)) for x < 0, accurate everywhere (Maechler 2012); x is clamped just below 0
    so that a saturated probability gives a large finite penalty instead of -inf."""
    x = x.clamp(max=_LOG1MEXP_CLAMP)
    return torch.where(x > -math.log(2), torch.log(-torch.expm1(x)), torch.log1p(-torch.exp(x)))


class _SpreadingFromLogits(torch.autograd.Function):
    """The instance-spreading loss from its logits s (m, M), s_ij = x_i . k_j / tau:
    L = -(1/m) sum_i [ log P_{i,pos(i)} + sum_{k in N_i} log(1 - P_ik) ], P_ik = softmax over
    k != self(i) of s_ik, N_i = every k but self(i) and pos(i); log(1 - P) as :func:`_log1mexp`.

    The value is computed entry by entry as the autograd chain did (the same numbers, summed
    in the same order). The gradient is written out, so backward is a few passes over one
    (m, M) buffer instead of autograd's ~25 (both branches of ``where``, masks, clamps):
    dL/ds_ij = -(1/m) [ 1(j = pos(i)) - R_ij + P_ij (sum_{k} R_ik - 1) ],
    R_ik = P_ik / (1 - P_ik) for k in N_i where the clamp of _log1mexp is inactive, else 0."""

    @staticmethod
    def forward(ctx, s: torch.Tensor, self_idx: torch.Tensor, pos: torch.Tensor) -> torch.Tensor:
        m = s.shape[0]
        rows = torch.arange(m, device=s.device)
        log_p = s.index_put((rows, self_idx), torch.tensor(float("-inf"), dtype=s.dtype, device=s.device))
        log_p -= torch.logsumexp(log_p, dim=1, keepdim=True)
        positive = log_p[rows, pos]
        p = torch.exp(log_p)  # P; 0 at self
        log_not = torch.neg(p).log1p_()  # log1p(-exp(x)): _log1mexp's branch for x <= -ln 2
        big = (log_p > -math.log(2)).nonzero(as_tuple=True)  # the other branch: a few entries at most
        x_big = log_p[big].clamp(max=_LOG1MEXP_CLAMP)
        log_not[big] = torch.log(-torch.expm1(x_big))
        zero = torch.zeros((), dtype=s.dtype, device=s.device)
        log_not.index_put_((rows, self_idx), zero).index_put_((rows, pos), zero)  # not negatives
        value = -(positive + log_not.sum(1)).mean()
        clamped = tuple(i[log_p[big] > _LOG1MEXP_CLAMP] for i in big)
        ctx.save_for_backward(p, pos, *clamped)
        return value

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        p, pos, *clamped = ctx.saved_tensors
        m = p.shape[0]
        rows = torch.arange(m, device=p.device)
        r = torch.neg(p).add_(1).reciprocal_().mul_(p)  # R = P / (1 - P); 0 at self (P = 0)
        zero = torch.zeros((), dtype=p.dtype, device=p.device)
        r.index_put_((rows, pos), zero).index_put_(tuple(clamped), zero)
        total = r.sum(dim=1, keepdim=True) - 1
        g = r.neg_().addcmul_(p, total)  # -R + P (sum R - 1)
        g[rows, pos] += 1
        return g.mul_(grad * (-1.0 / m)), None, None


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
    return _SpreadingFromLogits.apply(s, self_idx, pos)


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

    One batched matmul: memory O(n K D), never an (n, K, D, *S) tensor. A sum over pixels: the
    same for any common pixel order of a and v (view b's maps need no alignment)."""
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


class _BinaryEntropy(torch.autograd.Function):
    """-mean(q ln q + (1 - q) ln(1 - q)) / ln 2 with q = clamp(a, eps, 1 - eps), and its gradient
    (ln(1 - q) - ln q) / (numel ln 2), zero where the clamp is active (as autograd's clamp).

    Forward computes the same expression as the autograd chain, element by element, so the value
    is the same, in four full-size buffers reused in place; it keeps one (the gradient factor)
    where autograd keeps four and makes about ten full-size passes in backward."""

    @staticmethod
    def forward(ctx, a: torch.Tensor, eps: float) -> torch.Tensor:
        q = a.clamp(eps, 1 - eps)
        clamped = q != a  # clamp passes no gradient here
        log_q = torch.log(q)
        log_1mq = torch.neg(q).log1p_()
        factor = (log_1mq - log_q).masked_fill_(clamped, 0.0)  # d value / d a, times numel ln 2
        del clamped
        h = log_q.mul_(q)  # q ln q
        h += log_1mq.mul_(q.neg_().add_(1))  # + (1 - q) ln(1 - q): -q + 1 == 1 - q exactly
        ctx.save_for_backward(factor)
        return -h.mean() / math.log(2)

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        (factor,) = ctx.saved_tensors
        return factor * (grad / (factor.numel() * math.log(2))), None


def entropy_loss(a: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    """L_ent = mean_{n,p,k} H(a_{n,p,k}), H(q) = -q log2 q - (1-q) log2(1-q): binary entropy in
    bits, as the reference (in nats, w_ent = 0.1 would act as 0.069). a (n, K, *S); clamped to
    [eps, 1-eps] so the gradient stays finite at 0 and 1. Permutation-invariant: the pixel order
    of each map does not matter (view b's maps need no alignment)."""
    return _BinaryEntropy.apply(a, eps)


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
    "pooling_matrix",
    "cell_means",
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
