"""Local Discrimination losses (SPEC section 2) as pure functions.

Symbols: n views, D embedding size, K clusters, P = G^d grid cells, N pixels (voxels),
tau temperature, norm = L2 normalization. Pixel embeddings v (n, D, *S) are unit vectors,
cluster assignments a (n, K, *S) are >= 0 and sum to 1 over K.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F


def patch_embeddings(v: torch.Tensor, grid: int) -> torch.Tensor:
    """u = norm(avg_pool(v) to a G^d grid).  v (n, D, *S) -> u (n, G^d, D), cells in raster order."""
    pooled = F.adaptive_avg_pool2d(v, grid) if v.dim() == 4 else F.adaptive_avg_pool3d(v, grid)
    return F.normalize(pooled.flatten(2).transpose(1, 2), dim=-1)


def _log1mexp(x: torch.Tensor) -> torch.Tensor:
    """log(1 - exp(x)) for x < 0, accurate everywhere (Maechler 2012); x is clamped just below 0
    so that a saturated probability gives a large finite penalty instead of -inf."""
    x = x.clamp(max=-1e-7)
    return torch.where(x > -math.log(2), torch.log(-torch.expm1(x)), torch.log1p(-torch.exp(x)))


def instance_spreading_loss(x: torch.Tensor, pos: torch.Tensor, tau: float, grad_both_sides: bool = False) -> torch.Tensor:
    """Instance-spreading contrastive loss over M vectors, each with one positive partner.

    x (M, D) unit vectors, pos (M,) long: index of the positive of each row (pos[i] != i).
    s_ij = x_i . x_j / tau,  P_ij = exp(s_ij) / sum_{k != i} exp(s_ik),
    L = -(1/M) sum_i [ log P_{i,pos(i)} + sum_{k not in {i, pos(i)}} log(1 - P_ik) ].
    By default the partner and the keys x_j are constants (``x_j.detach()``): only the anchor
    x_i receives gradient, as in the reference. ``grad_both_sides`` lets it flow through both.
    """
    M = x.shape[0]
    keys = x if grad_both_sides else x.detach()
    s = x @ keys.T / tau  # (M, M)
    eye = torch.eye(M, dtype=torch.bool, device=x.device)
    s = s.masked_fill(eye, float("-inf"))
    log_p = s - torch.logsumexp(s, dim=1, keepdim=True)
    rows = torch.arange(M, device=x.device)
    positive = log_p[rows, pos]
    negatives = eye.clone()
    negatives[rows, pos] = True
    log_not = _log1mexp(log_p.masked_fill(negatives, -1.0)).masked_fill(negatives, 0.0)
    return -(positive + log_not.sum(1)).mean()


def paired_contrastive_loss(xa: torch.Tensor, xb: torch.Tensor, tau: float, grad_both_sides: bool = False) -> torch.Tensor:
    """:func:`instance_spreading_loss` over the 2*n*P vectors {xa} U {xb}, where xa[n, p] and
    xb[n, p] (both (n, P, D)) are each other's positive and every other vector is a negative."""
    n, P, D = xa.shape
    x = torch.cat([xa.reshape(n * P, D), xb.reshape(n * P, D)])
    M = x.shape[0]
    pos = (torch.arange(M, device=x.device) + n * P) % M
    return instance_spreading_loss(x, pos, tau, grad_both_sides)


def patch_discrimination_loss(ua: torch.Tensor, ub: torch.Tensor, tau: float = 0.1, grad_both_sides: bool = False) -> torch.Tensor:
    """L_pd. ua, ub (n, P, D): patch embeddings of views a and b of the same n images (view b
    already aligned to a); the positive of cell p of view a is cell p of view b and vice versa."""
    return paired_contrastive_loss(ua, ub, tau, grad_both_sides)


def mixup_targets(u1: torch.Tensor, u2: torch.Tensor, lam: torch.Tensor) -> torch.Tensor:
    """Hypersphere mixup target t = norm(lam u(x1a) + (1 - lam) u(x2a)), detached.
    u1, u2 (B, P, D), lam (B,) -> t (B, P, D)."""
    lam = lam.view(-1, 1, 1).to(u1.dtype)
    return F.normalize(lam * u1 + (1 - lam) * u2, dim=-1).detach()


def mixup_loss(um: torch.Tensor, u1: torch.Tensor, u2: torch.Tensor, lam: torch.Tensor, tau: float = 0.1, grad_both_sides: bool = False) -> torch.Tensor:
    """L_mix: the contrastive form over {u(m)} U {t} (2*B*P vectors); the positive of mixup cell
    i is target cell i and vice versa. um, u1, u2 (B, P, D); lam (B,). Targets never get gradient."""
    return paired_contrastive_loss(um, mixup_targets(u1, u2, lam), tau, grad_both_sides)


def region_embeddings(a: torch.Tensor, v: torch.Tensor) -> torch.Tensor:
    """r_{n,k} = norm( sum_p a_{n,p,k} v_{n,p} / N ).  a (n, K, *S), v (n, D, *S) -> r (n, K, D).

    One batched matmul: memory O(n K D), never an (n, K, D, *S) tensor."""
    N = a[0, 0].numel()
    r = torch.bmm(a.flatten(2), v.flatten(2).transpose(1, 2)) / N
    return F.normalize(r, dim=-1)


def prototypes(r: torch.Tensor) -> torch.Tensor:
    """c_k = norm( mean_n r_{n,k} ).  r (n, K, D) -> c (K, D)."""
    return F.normalize(r.mean(0), dim=-1)


def region_discrimination_loss(r: torch.Tensor, c: torch.Tensor, tau: float = 0.2) -> torch.Tensor:
    """L_ld = -mean_{n,k} log( exp(r_{n,k}.c_k / tau) / sum_j exp(r_{n,k}.c_j / tau) ).
    r (n, K, D), c (K, D)."""
    logits = torch.einsum("nkd,jd->nkj", r, c) / tau
    return -torch.diagonal(torch.log_softmax(logits, dim=-1), dim1=1, dim2=2).mean()


def entropy_loss(a: torch.Tensor, eps: float = 1e-6) -> torch.Tensor:
    """L_ent = mean_{n,p,k} H(a_{n,p,k}), H(q) = -q log q - (1-q) log(1-q) (binary entropy).
    a (n, K, *S); clamped to [eps, 1-eps] so the gradient stays finite at 0 and 1."""
    q = a.clamp(eps, 1 - eps)
    return -(q * torch.log(q) + (1 - q) * torch.log1p(-q)).mean()


def balance_loss(a: torch.Tensor) -> torch.Tensor:
    """Optional area prior: K * sum_k (mean_{n,p} a_{n,p,k} - 1/K)^2; 0 when clusters are equal.
    a (n, K, *S)."""
    K = a.shape[1]
    area = a.transpose(0, 1).reshape(K, -1).mean(1)
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
