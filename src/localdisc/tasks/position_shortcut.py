"""Do pixel embeddings describe content or the pixel's place in the image? (benchmarks/position_shortcut.py)

A test any dense embedding should pass: translate an image by t pixels (edge pixels repeated, so
nothing but the content moves) and match each anchor point's embedding from the original into
the translated image (nearest neighbour by cosine similarity over the whole image). An
embedding of content matches at anchor + t; an embedding of position (which a U-Net can read
from its zero padding) matches at the anchor itself. Per image and shift:

- follows = mean_a <m_a - a, t> / |t|^2 for anchors a matched at m_a (1: follows the content,
  0: stays at the same place);
- content hits / place hits: the share of anchors matched within 1.5 px of a + t / of a.

Anchors lie on a regular grid (stride 8 px), at least t + 8 px inside the border.
"""

from __future__ import annotations

from typing import Callable, Sequence

import numpy as np
import torch
import torch.nn.functional as F

EmbedFn = Callable[[torch.Tensor], torch.Tensor]  # (1, C, H, W) -> (1, D, H, W)


def translate(x: torch.Tensor, t: int) -> torch.Tensor:
    """(1, C, H, W) -> the content moved by t pixels down and right, edge pixels repeated."""
    if t == 0:
        return x
    return F.pad(x, (t, 0, t, 0), mode="replicate")[..., : x.shape[-2], : x.shape[-1]]


@torch.no_grad()
def shift_scores(embed: EmbedFn, image: torch.Tensor, t: int, stride: int = 8) -> dict[str, float]:
    """image (1, C, H, W) on the model grid -> {follows, content_hits, place_hits, anchors}."""
    H, W = image.shape[-2:]
    margin = t + 8
    ys, xs = torch.meshgrid(torch.arange(margin, H - margin, stride), torch.arange(margin, W - margin, stride), indexing="ij")
    anchors = torch.stack([ys.flatten(), xs.flatten()], 1)  # (A, 2)
    v0 = F.normalize(embed(image)[0], dim=0)  # (D, H, W)
    v1 = F.normalize(embed(translate(image, t))[0], dim=0)
    desc = v0[:, anchors[:, 0], anchors[:, 1]].T  # (A, D)
    idx = (desc @ v1.flatten(1)).argmax(1)
    match = torch.stack([idx // W, idx % W], 1).float()
    disp = match - anchors.float()
    true = torch.tensor([t, t], dtype=torch.float32)
    follows = float((disp @ true).mean() / (true @ true)) if t else float("nan")
    return {"follows": follows, "content_hits": float(((disp - true).norm(dim=1) <= 1.5).float().mean()),
            "place_hits": float((disp.norm(dim=1) <= 1.5).float().mean()), "anchors": int(len(anchors))}


def shift_table(embed: EmbedFn, images: Sequence[torch.Tensor], shifts: Sequence[int]) -> dict[str, dict[str, float]]:
    """{str(t): {follows, content_hits, place_hits}} means over ``images`` (each (1, C, H, W))."""
    rows = {}
    for t in shifts:
        per = [shift_scores(embed, im, t) for im in images]
        rows[str(t)] = {k: float(np.mean([r[k] for r in per])) for k in ("follows", "content_hits", "place_hits")}
    return rows
