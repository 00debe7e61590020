"""Pixel (voxel) embeddings of a pretraining run, written for use elsewhere.

``embed_images(model, samples, out)`` writes, per image (file names from the sample id):

- ``embeddings/<id>.npy``: float16 (D, H', W') embeddings at the network's grid (the run's
  image size; for LD the unit vectors v of the embedding head, for other methods the U-Net's
  trunk features), or for volumes ``embeddings/<id>.nii.gz``: a 4-D NIfTI (x, y, z, D) whose
  affine places the network's grid on the source scan (same field of view, larger voxels);
- ``clusters/<id>.png`` / ``.nii.gz`` (runs with a clustering head, e.g. LD stage 2): the
  argmax cluster per pixel at the source's own size, volumes in the source's voxel order and
  affine (they overlay the scan in a viewer);
- ``pictures/<id>.png``: input | first three principal components | clusters;
- ``embed.json``: run, data, grid size, embedding dimension and the files per image.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from ..data.datasets import resize_image
from ..data.geometry import write_nifti
from ..data.io import read_geometry
from ..data.records import load_sample_image
from ..pictures.embeddings import save_embedding_figure
from ..utils import SafeNames, progress
from .discover import palette


def features(method: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
    """(B, C, *S) -> (B, D, *S): LD's unit embeddings, else the backbone's trunk features."""
    if hasattr(method, "embed"):
        return method.embed(x)
    return method.backbone.forward_features(x).trunk


def grid_affine(canonical_affine: np.ndarray, source_dhw: Sequence[int], grid_dhw: Sequence[int]) -> np.ndarray:
    """Affine of a (x', y', z') grid that resamples the RAS-reoriented source (D, H, W) to
    ``grid_dhw`` (align_corners=False): voxel centre x' sits at source x = (x' + 0.5) s - 0.5."""
    s = np.asarray(source_dhw, float)[::-1] / np.asarray(grid_dhw, float)[::-1]  # (x, y, z) scales
    t = np.eye(4)
    t[:3, :3] = np.diag(s)
    t[:3, 3] = 0.5 * s - 0.5
    return canonical_affine @ t


@torch.no_grad()
def embed_images(model, samples: Sequence, out: str | Path, max_pictures: int = 16) -> dict[str, Any]:
    """Write embeddings, cluster maps and pictures of ``samples`` under ``out`` (see module doc)."""
    import nibabel as nib  # deferred: heavy optional dependency, loaded only when used

    out = Path(out)
    for sub in ("embeddings", "clusters", "pictures"):
        (out / sub).mkdir(parents=True, exist_ok=True)
    names = SafeNames()
    method = model.method
    has_clusters = getattr(method, "cluster_head", None) is not None
    listing: list[dict[str, Any]] = []
    dim = None
    for i, s in enumerate(progress(samples, desc="embed")):
        image = load_sample_image(s, model.channels)
        x = resize_image(torch.from_numpy(image), model.size)[None].to(model.device)
        v = features(method, x).float().cpu()
        dim = int(v.shape[1])
        a = method.assign(x).float().cpu() if has_clusters else None
        name = names(s.id)
        entry: dict[str, Any] = {"id": s.id, "image": s.image, "source_size": list(image.shape[1:])}
        geom = read_geometry(s.image) if image.ndim == 4 else None  # volumes from NIfTI/DICOM
        if geom is not None:
            aff = grid_affine(geom.canonical_affine(), image.shape[1:], model.size)
            emb = np.transpose(v[0].numpy(), (3, 2, 1, 0)).astype(np.float32)  # (D, d, h, w) -> (x, y, z, D)
            nib.save(nib.Nifti1Image(emb, aff), str(out / "embeddings" / f"{name}.nii.gz"))
            entry["embeddings"] = f"embeddings/{name}.nii.gz"
        else:
            np.save(out / "embeddings" / f"{name}.npy", v[0].numpy().astype(np.float16))
            entry["embeddings"] = f"embeddings/{name}.npy"
        if a is not None:
            mode = "bilinear" if image.ndim == 3 else "trilinear"
            labels = F.interpolate(a, size=tuple(image.shape[1:]), mode=mode, align_corners=False)[0].argmax(0).numpy().astype(np.uint8)
            if geom is not None:
                write_nifti(labels, geom, out / "clusters" / f"{name}.nii.gz")
                entry["clusters"] = f"clusters/{name}.nii.gz"
            elif image.ndim == 4:
                np.save(out / "clusters" / f"{name}.npy", labels)
                entry["clusters"] = f"clusters/{name}.npy"
            else:
                Image.fromarray(labels).save(out / "clusters" / f"{name}.png")  # cluster indices
                Image.fromarray(palette(a.shape[1])[labels]).save(out / "clusters" / f"{name}_color.png")
                entry["clusters"] = f"clusters/{name}.png"
        if i < max_pictures:
            save_embedding_figure(x.cpu(), v, a, out / "pictures" / f"{name}.png")
            entry["picture"] = f"pictures/{name}.png"
        listing.append(entry)
    info = {"grid_size": list(model.size), "embedding_dim": dim, "clusters": has_clusters, "images": listing}
    (out / "embed.json").write_text(json.dumps(info, indent=2))
    return info
