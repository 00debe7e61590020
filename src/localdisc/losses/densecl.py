"""Dense InfoNCE (DenseCL-style, docs/method.md 7) between two views' dense projections.

q, k: (B, D, L) dense projections of view 1 and view 2 at L locations (a pooled grid),
normalized here. ``match`` (B, L) gives, for every query location l of image b, the location
of its positive in view 2 of the same image (identity when the two views share their
geometry, or ``match_by_similarity`` as in DenseCL). With s = q.k / tau:

    L_{b,l} = -log( exp(s(q_bl, k_{b,m(b,l)})) /
                    ( exp(s(q_bl, k_{b,m(b,l)})) + sum_{b' != b, l'} exp(s(q_bl, k_{b'l'})) ) )

Negatives are all locations of the other images in the (gathered) batch; DenseCL draws them
from a memory queue of other images instead. ``same_image_negatives=True`` also uses the
other locations of the same image as negatives (patch discrimination). Both sides receive
gradient (no momentum encoder). Returns the mean over B*L queries.
"""

from __future__ import annotations

from typing import Callable

import torch
import torch.nn.functional as F

from .ntxent import _rank


def match_by_similarity(f1: torch.Tensor, f2: torch.Tensor) -> torch.Tensor:
    """DenseCL correspondence: for each location of f1 (B, C, L) the argmax-cosine location in f2 (B, C, L) -> (B, L)."""
    sim = torch.einsum("bcl,bcm->blm", F.normalize(f1.float(), dim=1), F.normalize(f2.float(), dim=1))
    return sim.argmax(dim=2)


def dense_info_nce(
    q: torch.Tensor,
    k: torch.Tensor,
    tau: float = 0.2,
    match: torch.Tensor | None = None,
    same_image_negatives: bool = False,
    gather: Callable[[torch.Tensor], torch.Tensor] | None = None,
    rank: int | None = None,
) -> torch.Tensor:
    if q.shape != k.shape or q.dim() != 3:
        raise ValueError(f"q and k must both be (B, D, L); got {tuple(q.shape)} and {tuple(k.shape)}")
    b, _, l = q.shape
    q = F.normalize(q.float(), dim=1).transpose(1, 2).reshape(b * l, -1)  # (B*L, D)
    kl = F.normalize(k.float(), dim=1).transpose(1, 2)  # (B, L, D)
    offset = 0
    if gather is not None:
        kl = gather(kl)
        offset = b * (_rank() if rank is None else rank)
    keys = kl.reshape(-1, kl.shape[-1])  # (B_all*L, D)
    logits = q @ keys.T / tau  # (B*L, B_all*L)

    img = torch.arange(b, device=q.device).repeat_interleave(l) + offset  # image of each query
    if match is None:
        match = torch.arange(l, device=q.device).expand(b, l)
    pos = img * l + match.reshape(-1).to(q.device)
    if not same_image_negatives:
        key_img = torch.arange(kl.shape[0], device=q.device).repeat_interleave(l)
        drop = key_img[None, :] == img[:, None]
        drop[torch.arange(b * l, device=q.device), pos] = False
        logits = logits.masked_fill(drop, torch.finfo(logits.dtype).min)
    return F.cross_entropy(logits, pos)


__all__ = ["dense_info_nce", "match_by_similarity"]
