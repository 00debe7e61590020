"""Patch-dragsaw contrastive regularization (PDCR), docs/method.md / seed 004.

A supervised add-on: feature vectors z_i sampled from chosen U-Net layers are pulled
together or pushed apart by a continuous label affinity a_ij of the image regions they see.

    phi_i  = per-class fraction of the labels in a window around the receptive-field center of z_i
    a_ij   = 1 - 0.5 * sum_c |phi_i^c - phi_j^c|          in [0, 1]   (1 - total variation)
    d_ij   = 1 - a_ij
    s_ij   = cos(z_i, z_j) / tau
    L      = -mean_{i != j} log( exp(a_ij s_ij) / sum_{k != i} exp(d_ik s_ik) )

The numerator pulls pairs in proportion to their affinity a, the denominator pushes in
proportion to their dissimilarity d. (The reference 2D code swaps a and d, which pulls
dissimilar patches together; its 3D code fills phi by order of appearance of the classes,
so class c of one patch is compared with another class of the next. Here phi is indexed by
class id and a/d are as written.)

Choices (documented defaults):
- Pairs are formed across the whole batch (``pairs="batch"``, as the paper contrasts patches
  across the batch: same-class regions of different images attract). ``pairs="image"``
  restricts them to one image. Self-pairs i == j are excluded from numerator and denominator.
- Vectors are sampled on a jittered grid: the feature map is split into >= K near-equal
  cells, K cells are drawn at random and one position drawn inside each (torch RNG), so the
  samples cover the image and differ every step. Maps with <= K positions use all of them.
- Windows are centred on the receptive-field center (nets/receptive_field.py), clamped into
  the image: a window of w px spans the pixels within w/2 of the center per axis (w + 1 px when
  the center lies between pixels) cut to the image; 0 means the receptive field (cut to the
  image). Fractions are box averages of one-hot labels from an integral image (exact integer
  sums, any box per sample, one gather: no loop over positions, no host sync). Pixels whose
  label is outside [0, num_classes) count as pixels but not as any class (ignore labels).
- The loss is averaged over window sizes and summed over layers (the finetune weight
  0.01..0.1 applies per layer, docs/method.md); ``cross_layer`` adds, for each consecutive pair of chosen
  layers with equal channel counts, the mean of both directions (anchors in one layer,
  candidates in the other).
"""

from __future__ import annotations

import math
from functools import lru_cache

import torch
import torch.nn.functional as F
from torch import nn

from ..errors import ConfigError
from ..nets.receptive_field import feature_size, layer_level, layer_positions


def label_integral(labels: torch.Tensor, num_classes: int) -> torch.Tensor:
    """labels (B, *S) int -> integral image of the one-hot labels, int32 (B, C, *(S + 1)),
    with a leading zero row per axis: box sums by inclusion-exclusion."""
    dims = labels.dim() - 1
    classes = torch.arange(num_classes, device=labels.device).view(1, -1, *[1] * dims)
    onehot = (labels.unsqueeze(1) == classes).to(torch.int32)
    for axis in range(2, 2 + dims):
        onehot = onehot.cumsum(axis, dtype=torch.int32)
    return F.pad(onehot, [1, 0] * dims)


def box_fractions(integral: torch.Tensor, lo: torch.Tensor, hi: torch.Tensor, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """Per-class fraction inside inclusive boxes.

    integral: (B, C, *(S + 1)) from :func:`label_integral`; lo, hi: (B, M, D) int64 box
    corners inside the image. Returns (B, M, C) ``dtype``: sum_{p in box} onehot_c(p) / |box|.
    """
    b, c = integral.shape[:2]
    sizes = integral.shape[2:]
    dims = len(sizes)
    strides = [math.prod(sizes[a + 1 :]) for a in range(dims)]
    index, signs = [], []
    for corner in range(2**dims):  # 4 (2D) or 8 (3D) corners, a static loop
        flat = 0
        n_hi = 0
        for axis in range(dims):
            take_hi = (corner >> axis) & 1
            n_hi += take_hi
            coord = hi[..., axis] + 1 if take_hi else lo[..., axis]
            flat = flat + coord * strides[axis]
        index.append(flat)
        signs.append(1 if (dims - n_hi) % 2 == 0 else -1)
    index = torch.stack(index, dim=-1)  # (B, M, 2**D)
    m = index.shape[1]
    gathered = integral.reshape(b, c, -1).gather(2, index.reshape(b, 1, -1).expand(b, c, -1))
    sign = torch.tensor(signs, device=integral.device, dtype=torch.int32)
    sums = (gathered.view(b, c, m, -1) * sign).sum(-1)  # (B, C, M)
    count = (hi - lo + 1).prod(-1)  # (B, M)
    return (sums.to(dtype) / count.unsqueeze(1).to(dtype)).transpose(1, 2)


def affinity(phi_a: torch.Tensor, phi_b: torch.Tensor) -> torch.Tensor:
    """a_ij = 1 - 0.5 * ||phi_i - phi_j||_1. phi_a (..., N, C), phi_b (..., M, C) -> (..., N, M)."""
    lead = phi_a.shape[:-2]
    dist = torch.cdist(phi_a.reshape(-1, *phi_a.shape[-2:]), phi_b.reshape(-1, *phi_b.shape[-2:]), p=1)
    return (1.0 - 0.5 * dist).clamp(0.0, 1.0).reshape(*lead, phi_a.shape[-2], phi_b.shape[-2])


def pdcr_contrast(z_a: torch.Tensor, z_b: torch.Tensor, aff: torch.Tensor, tau: float, exclude_self: bool) -> torch.Tensor:
    """The PDCR loss for anchors z_a against candidates z_b.

    z_a (G, N, D), z_b (G, M, D) feature vectors in G independent groups (G = 1 across the
    batch, G = B per image); aff (W, G, N, M) label affinities a_ij for W window sizes.
    With ``exclude_self`` (z_a is z_b) pairs i == j are dropped. Returns the mean over windows,
    groups and pairs of  log sum_{k} exp(d_ik s_ik) - a_ij s_ij.
    """
    if z_a.dtype in (torch.float16, torch.bfloat16):  # autocast: s / tau and the exps need float32
        z_a, z_b = z_a.float(), z_b.float()
    with torch.autocast(z_a.device.type, enabled=False):
        s = torch.einsum("gnd,gmd->gnm", F.normalize(z_a, dim=-1), F.normalize(z_b, dim=-1)) / tau
    aff = aff.to(s.dtype)
    pull = aff * s
    push = (1.0 - aff) * s
    n, m = s.shape[-2:]
    if exclude_self:
        eye = torch.eye(n, m, dtype=torch.bool, device=s.device)
        push = push.masked_fill(eye, float("-inf"))
    per_pair = torch.logsumexp(push, dim=-1, keepdim=True) - pull  # (W, G, N, M)
    if exclude_self:
        return per_pair.masked_fill(eye, 0.0).sum() / (per_pair.numel() - per_pair.shape[0] * per_pair.shape[1] * n)
    return per_pair.mean()


@lru_cache(maxsize=64)
def _grid_cells(shape: tuple[int, ...], k: int) -> tuple[int, ...]:
    """Cells per axis, roughly proportional to the axis lengths, with prod >= k."""
    ratio = (k / math.prod(shape)) ** (1.0 / len(shape))
    cells = [min(n, max(1, math.ceil(n * ratio))) for n in shape]
    while math.prod(cells) < k:  # an axis hit its length: grow the others
        axis = max((a for a in range(len(shape)) if cells[a] < shape[a]), key=lambda a: shape[a] / cells[a])
        cells[axis] += 1
    return tuple(cells)


def sample_grid_positions(shape: tuple[int, ...], k: int, batch: int, device: torch.device) -> torch.Tensor:
    """(B, K', D) int64 positions on a feature map of spatial ``shape``: one random position in
    each of K randomly chosen grid cells (K' = min(K, prod(shape)); all positions if fewer)."""
    total = math.prod(shape)
    if total <= k:
        grids = torch.meshgrid(*[torch.arange(n, device=device) for n in shape], indexing="ij")
        return torch.stack([g.reshape(-1) for g in grids], dim=-1).unsqueeze(0).expand(batch, -1, -1)
    cells = _grid_cells(tuple(shape), k)
    chosen = torch.rand(batch, math.prod(cells), device=device).argsort(dim=1)[:, :k]  # (B, K)
    coords = []
    for axis, (n, g) in enumerate(zip(shape, cells)):
        inner = math.prod(cells[axis + 1 :])
        cell = (chosen // inner) % g
        edges = torch.div(torch.arange(g + 1, device=device) * n, g, rounding_mode="floor")
        start, width = edges[cell], edges[cell + 1] - edges[cell]
        offset = (torch.rand(batch, k, device=device) * width).long().minimum(width - 1)
        coords.append(start + offset)
    return torch.stack(coords, dim=-1)


class PDCRLoss(nn.Module):
    """PDCR on U-Net features. ``forward(features: UNetFeatures, labels (B, *S) int64) -> scalar``.

    Labels are at input resolution; layer names are ``encoder.i`` / ``decoder.j`` of
    :class:`~localdisc.nets.unet.UNet`. No parameters: the module only holds geometry caches.
    """

    def __init__(
        self,
        unet_config,
        num_classes: int,
        layers: tuple[str, ...] = ("decoder.2", "decoder.3"),
        vectors_per_layer: int = 64,
        windows: tuple[int, ...] = (5, 7, 9),
        tau: float = 0.1,
        cross_layer: bool = False,
        pairs: str = "batch",
    ):
        super().__init__()
        self.depth = len(unet_config.encoder_channels)
        self.spatial_dims = unet_config.spatial_dims
        self.uafs_stages = tuple(unet_config.uafs_stages)
        self.layers = tuple(layers)
        if not self.layers:
            raise ConfigError("PDCR needs at least one layer (e.g. decoder.3)")
        channels = {}
        for name in self.layers:
            try:
                layer_level(name, self.depth)
            except ValueError as e:
                raise ConfigError(f"pdcr layer: {e}") from None
            part, idx = name.split(".")
            widths = unet_config.encoder_channels if part == "encoder" else unet_config.decoder_channels
            channels[name] = widths[int(idx)]
        if num_classes < 2:
            raise ConfigError(f"PDCR needs num_classes >= 2 (background + foreground), got {num_classes}")
        if vectors_per_layer < 2:
            raise ConfigError(f"pdcr vectors per layer must be >= 2, got {vectors_per_layer}")
        if not windows or any(int(w) < 0 for w in windows):
            raise ConfigError(f"pdcr windows must be sizes in pixels >= 1, or 0 for the receptive field; got {windows}")
        if tau <= 0:
            raise ConfigError(f"pdcr tau must be > 0, got {tau}")
        if pairs not in ("batch", "image"):
            raise ConfigError(f"pdcr pairs must be 'batch' or 'image', got {pairs!r}")
        self.cross_pairs = []
        if cross_layer:
            for a, b in zip(self.layers[:-1], self.layers[1:]):
                if channels[a] != channels[b]:
                    raise ConfigError(f"pdcr cross-layer pairs need equal widths; {a} has {channels[a]} channels, {b} has {channels[b]}")
                self.cross_pairs.append((a, b))
        self.num_classes = int(num_classes)
        self.k = int(vectors_per_layer)
        self.windows = tuple(int(w) for w in windows)
        self.tau = float(tau)
        self.pairs = pairs
        self._geometry: dict = {}

    def extra_repr(self) -> str:
        return f"layers={self.layers}, k={self.k}, windows={self.windows}, tau={self.tau}, pairs={self.pairs}, cross={self.cross_pairs}"

    def _positions(self, layer: str, shape: tuple[int, ...], device: torch.device):
        key = (layer, shape, str(device))
        if key not in self._geometry:
            if len(self._geometry) > 256:  # many distinct input sizes (e.g. full-image validation)
                self._geometry.clear()
            axes = layer_positions(self.depth, self.uafs_stages, layer, shape)
            self._geometry[key] = [tuple(torch.as_tensor(t, device=device) for t in ax) for ax in axes]
        return self._geometry[key]

    def sample(self, fmap: torch.Tensor, layer: str, integral: torch.Tensor, shape: tuple[int, ...]):
        """fmap (B, C, *s) -> z (B, K, C) and phi (W, B, K, num_classes)."""
        b, c = fmap.shape[:2]
        pos = sample_grid_positions(tuple(fmap.shape[2:]), self.k, b, fmap.device)  # (B, K, D)
        strides = [math.prod(fmap.shape[3 + a :]) for a in range(self.spatial_dims)]
        flat = sum(pos[..., a] * strides[a] for a in range(self.spatial_dims))
        z = fmap.reshape(b, c, -1).gather(2, flat.unsqueeze(1).expand(-1, c, -1)).transpose(1, 2)
        los, his = [], []
        for w in self.windows:
            lo_ax, hi_ax = [], []
            for a, (center, rf_lo, rf_hi) in enumerate(self._positions(layer, shape, fmap.device)):
                p = pos[..., a]
                if w == 0:
                    lo_ax.append(rf_lo[p])
                    hi_ax.append(rf_hi[p])
                else:
                    ctr = center[p].clamp(0, shape[a] - 1)
                    lo_ax.append(torch.ceil(ctr - w / 2).long().clamp(min=0))
                    hi_ax.append(torch.floor(ctr + w / 2).long().clamp(max=shape[a] - 1))
            los.append(torch.stack(lo_ax, -1))
            his.append(torch.stack(hi_ax, -1))
        k = pos.shape[1]
        dtype = torch.float64 if fmap.dtype == torch.float64 else torch.float32
        phi = box_fractions(integral, torch.cat(los, 1), torch.cat(his, 1), dtype)  # (B, W*K, C)
        phi = phi.view(b, len(self.windows), k, -1).permute(1, 0, 2, 3)
        return z, phi

    def _group(self, z: torch.Tensor, phi: torch.Tensor):
        if self.pairs == "batch":
            return z.reshape(1, -1, z.shape[-1]), phi.reshape(phi.shape[0], 1, -1, phi.shape[-1])
        return z, phi

    def forward(self, features, labels: torch.Tensor) -> torch.Tensor:
        shape = tuple(labels.shape[1:])
        if len(shape) != self.spatial_dims:
            raise ValueError(f"PDCR expects labels (B, *spatial) with {self.spatial_dims} spatial dims, got {tuple(labels.shape)}")
        integral = label_integral(labels, self.num_classes)
        sampled = {}
        for layer in self.layers:
            part, idx = layer.split(".")
            fmap = getattr(features, part)[int(idx)]
            expect = tuple(feature_size(n, layer_level(layer, self.depth)) for n in shape)
            if tuple(fmap.shape[2:]) != expect or fmap.shape[0] != labels.shape[0]:
                raise ValueError(f"{layer} has shape {tuple(fmap.shape)}, expected (B={labels.shape[0]}, C, {expect}) for labels {tuple(labels.shape)}")
            sampled[layer] = self._group(*self.sample(fmap, layer, integral, shape))
        terms = []
        for z, phi in sampled.values():
            if z.shape[1] > 1:  # a single vector has no pair
                terms.append(pdcr_contrast(z, z, affinity(phi, phi), self.tau, exclude_self=True))
        for a, b in self.cross_pairs:
            (za, pa), (zb, pb) = sampled[a], sampled[b]
            aff = affinity(pa, pb)
            terms.append(0.5 * (
                pdcr_contrast(za, zb, aff, self.tau, exclude_self=False)
                + pdcr_contrast(zb, za, aff.transpose(-1, -2), self.tau, exclude_self=False)
            ))
        if not terms:  # keep the graph (and DDP) happy with an exact zero
            return sum(z.sum() for z, _ in sampled.values()) * 0.0
        return sum(terms[1:], terms[0])
