"""Built-in synthetic data: fundus photographs (vessels, optic disc, fovea, FOV, landmarks) and
3D volumes (tubes + blobs), generated with :mod:`localdisc.data.shapes`.

Layouts (``--data`` specs, cached on disk under ``$LOCALDISC_CACHE`` or ``~/.cache/localdisc``):
- ``synthetic-fundus[:N[:HxW[:SEED]]]``: vessel segmentation (default 40 images of 256x256);
- ``synthetic-fundus-disc[:N[:HxW[:SEED]]]``: the same images, optic disc target;
- ``synthetic-3d[:N[:DxHxW[:SEED]]]``: tube/blob segmentation (default 12 volumes of 48x64x64).
The data seed comes from the spec (default 0), not from the run's ``--seed``, so runs with
different seeds are compared on the same data. The last 20% of the samples are ``test``, the
rest ``train`` (validation is carved from train by the splits module).
"""

from __future__ import annotations

import csv
import json
import os
import shutil
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image
from scipy.ndimage import gaussian_filter

from ..errors import DataError
from .folders import read_manifest
from .records import Sample
from .registry import register_layout
from .retina import fundus_layout, retinal_vessels
from .shapes import vessel_tree_3d
from .simulate import save_nifti

FUNDUS_CLASSES = ["background", "vessel"]
DISC_CLASSES = ["background", "optic_disc"]
VOLUME_CLASSES = ["background", "tube", "blob"]
VOLUME_SPACING = (1.5, 1.0, 1.0)


def _texture(shape, rng: np.random.Generator, sigma: float) -> np.ndarray:
    """Smooth noise with unit std (Gaussian-filtered white noise)."""
    t = gaussian_filter(rng.standard_normal(shape).astype(np.float32), sigma)
    return t / max(float(t.std()), 1e-6)


def make_fundus(size=(256, 256), rng: np.random.Generator | None = None) -> dict:
    """One synthetic fundus photograph.

    Returns dict: image float32 (3, H, W) in [0, 1]; vessels, disc, fov bool (H, W); landmarks
    {"optic_disc": (row, col), "fovea": (row, col)}; eye "left" | "right". Anatomy (FOV, disc,
    fovea, vessel arcades) comes from :mod:`localdisc.data.retina`, shared with the ``retina``
    prior kind of the shape simulator.
    """
    rng = np.random.default_rng() if rng is None else rng
    H, W = int(size[0]), int(size[1])
    s = min(H, W)
    yy, xx = np.mgrid[0:H, 0:W].astype(np.float32)
    cy, cx = (H - 1) / 2, (W - 1) / 2
    lay = fundus_layout((H, W), rng)
    R, r2, fov, eye, dd, disc_c, fovea_c, disc = (lay[k] for k in ("R", "r2", "fov", "eye", "dd", "disc_c", "fovea_c", "disc"))
    nasal = 1.0 if eye == "right" else -1.0
    vessels, contrast = retinal_vessels((H, W), rng, lay)

    # background: orange-red, brighter at the posterior pole, low-frequency + fine texture
    base = np.array([rng.uniform(0.78, 0.92), rng.uniform(0.3, 0.4), rng.uniform(0.08, 0.15)], np.float32)
    g = rng.standard_normal(2) * 0.12
    illum = (1 - rng.uniform(0.3, 0.45) * r2**1.4) * (1 + g[0] * (yy - cy) / R + g[1] * (xx - cx) / R)
    tex = 1 + 0.05 * _texture((H, W), rng, s / 14) + 0.025 * _texture((H, W), rng, max(0.8, s / 200))
    img = base[:, None, None] * (illum * tex)[None]
    d2f = ((yy - fovea_c[0]) ** 2 + (xx - fovea_c[1]) ** 2) / (0.7 * dd) ** 2
    macula = np.exp(-0.5 * d2f)
    img *= (1 - np.array([0.25, 0.4, 0.35], np.float32)[:, None, None] * macula[None])
    # optic disc: pale yellow-pink rim with a brighter cup toward the temporal side
    soft = gaussian_filter(disc.astype(np.float32), 0.06 * dd)
    cup_c = disc_c + np.array([0.0, -nasal * 0.08 * dd])
    cup = np.exp(-0.5 * ((yy - cup_c[0]) ** 2 + (xx - cup_c[1]) ** 2) / (0.2 * dd) ** 2) * soft
    disc_rgb = np.array([1.0, rng.uniform(0.72, 0.85), rng.uniform(0.45, 0.6)], np.float32)[:, None, None]
    img = img * (1 - soft[None]) + disc_rgb * (0.85 + 0.1 * illum)[None] * soft[None]
    img = img + 0.25 * cup[None] * (1 - img)
    # vessels absorb most in green and blue (why vessel segmentation likes the green channel)
    img *= 1 - np.array([0.35, 0.85, 0.7], np.float32)[:, None, None] * contrast[None]
    img = gaussian_filter(img, (0, 0.5 * s / 256 + 0.3, 0.5 * s / 256 + 0.3))
    img = img + rng.normal(0, 0.012, img.shape).astype(np.float32)
    edge = np.clip((1 - np.sqrt(r2)) * R / 1.5, 0, 1)  # soft rim inside the FOV, black outside
    img = np.clip(img * edge[None], 0, 1).astype(np.float32)
    return {
        "image": img, "vessels": vessels, "disc": disc & fov, "fov": fov, "eye": eye,
        "landmarks": {"optic_disc": (float(disc_c[0]), float(disc_c[1])), "fovea": (float(fovea_c[0]), float(fovea_c[1]))},
    }


def make_volume(size=(48, 64, 64), rng: np.random.Generator | None = None, spacing=VOLUME_SPACING) -> dict:
    """One synthetic volume: tubes (3D vessel trees) and ellipsoid blobs on a textured background.

    Returns dict: image float32 (1, D, H, W) in [0, 1]; labels int64 (D, H, W) (0 bg, 1 tube,
    2 blob); spacing (mm, D/H/W); landmarks {"tube_root": ..., "blob": center of the largest blob}.
    """
    rng = np.random.default_rng() if rng is None else rng
    shape = tuple(int(v) for v in size)
    sp = np.asarray(spacing, float)
    s = min(a * b for a, b in zip(shape, sp))
    root = np.array([rng.uniform(0.3, 0.7) * (n - 1) for n in shape])
    tubes, _ = vessel_tree_3d(shape, rng, n_roots=int(rng.integers(3, 5)), depth=4, branch_angle=(25, 50), thickness=(1.5, max(2.5, s / 7)),
                              taper=0.75, tortuosity=0.15, root=root, length=0.4, length_taper=0.8, spacing=sp)
    grid = np.stack(np.meshgrid(*[np.arange(n) * v for n, v in zip(shape, sp)], indexing="ij"), -1)
    labels = tubes.astype(np.int64)
    blob_soft = np.zeros(shape, np.float32)
    best, best_vol = None, -1.0
    for _ in range(int(rng.integers(2, 5))):
        c = np.array([rng.uniform(0.15, 0.85) * (n - 1) for n in shape]) * sp
        radii = rng.uniform(0.08, 0.17, 3) * s
        rot = np.linalg.qr(rng.standard_normal((3, 3)))[0]
        q = ((grid - c) @ rot) / radii
        rho = np.sqrt((q**2).sum(-1))
        labels[rho <= 1] = 2
        blob_soft = np.maximum(blob_soft, np.clip((1 - rho) * radii.min() + 0.5, 0, 1))
        if np.prod(radii) > best_vol:
            best, best_vol = c / sp, float(np.prod(radii))
    tube_soft = gaussian_filter(tubes.astype(np.float32), 0.6)
    bg = 0.3 + 0.05 * _texture(shape, rng, 3.0) + 0.02 * _texture(shape, rng, 1.0)
    img = bg + 0.45 * tube_soft + 0.25 * blob_soft * (1 + 0.1 * _texture(shape, rng, 1.5))
    img = img + rng.normal(0, 0.025, shape).astype(np.float32)
    img = np.clip(gaussian_filter(img, 0.5), 0, 1).astype(np.float32)[None]
    return {
        "image": img, "labels": labels, "spacing": tuple(float(v) for v in sp),
        "landmarks": {"tube_root": tuple(float(v) for v in root), "blob": tuple(float(v) for v in best)},
    }


def _split_of(i: int, n: int) -> str:
    n_test = max(1, round(0.2 * n)) if n >= 2 else 0
    return "test" if i >= n - n_test else "train"


def _png(arr: np.ndarray, path: Path) -> None:
    Image.fromarray(arr).save(path)  # PIL writes no timestamps: equal arrays give equal bytes


def _atomic_dir(out_dir: Path, fill) -> Path:
    """Build the dataset in a temporary sibling folder, then rename it into place."""
    out_dir = Path(out_dir)
    if (out_dir / "manifest.csv").is_file():
        return out_dir
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}-", dir=out_dir.parent))
    try:
        fill(tmp)
        if out_dir.exists() and not (out_dir / "manifest.csv").is_file():
            shutil.rmtree(out_dir)  # leftover of an interrupted non-atomic write
        try:
            os.rename(tmp, out_dir)
        except OSError:
            if not (out_dir / "manifest.csv").is_file():  # someone else finished first otherwise
                raise
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return out_dir


def _write_manifest(folder: Path, rows: list[dict], landmarks: dict) -> None:
    with open(folder / "manifest.csv", "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]), lineterminator="\n")
        w.writeheader()
        w.writerows(rows)
    (folder / "landmarks.json").write_text(json.dumps(landmarks, indent=1, sort_keys=True) + "\n")


def generate_fundus_dataset(out_dir, n: int = 40, size=(256, 256), seed: int = 0) -> Path:
    """Write images/, masks/ (vessels 0/255), disc/, fov/, manifest.csv, landmarks.json (atomic).
    Sample i depends only on (seed, i); an existing complete folder is reused."""

    def fill(tmp: Path) -> None:
        for sub in ("images", "masks", "disc", "fov"):
            (tmp / sub).mkdir()
        rows, marks = [], {}
        for i in range(n):
            sid = f"fundus_{i:03d}"
            f = make_fundus(size, np.random.default_rng([seed, i]))
            _png(np.round(np.moveaxis(f["image"], 0, -1) * 255).astype(np.uint8), tmp / "images" / f"{sid}.png")
            for sub, key in (("masks", "vessels"), ("disc", "disc"), ("fov", "fov")):
                _png(f[key].astype(np.uint8) * 255, tmp / sub / f"{sid}.png")
            rows.append({"id": sid, "image": f"images/{sid}.png", "mask": f"masks/{sid}.png", "disc": f"disc/{sid}.png",
                         "fov": f"fov/{sid}.png", "split": _split_of(i, n), "eye": f["eye"]})
            marks[sid] = {k: [round(v, 3) for v in c] for k, c in f["landmarks"].items()}
        _write_manifest(tmp, rows, marks)

    return _atomic_dir(Path(out_dir), fill)


def generate_volume_dataset(out_dir, n: int = 12, size=(48, 64, 64), seed: int = 0) -> Path:
    """Write images/*.nii.gz, labels/*.nii.gz (0 bg, 1 tube, 2 blob; spacing in the header),
    manifest.csv (with a spacing column) and landmarks.json (atomic, deterministic)."""

    def fill(tmp: Path) -> None:
        (tmp / "images").mkdir()
        (tmp / "labels").mkdir()
        rows, marks = [], {}
        for i in range(n):
            sid = f"volume_{i:03d}"
            v = make_volume(size, np.random.default_rng([seed, i]))
            save_nifti(v["image"][0], tmp / "images" / f"{sid}.nii.gz", v["spacing"])
            save_nifti(v["labels"].astype(np.uint8), tmp / "labels" / f"{sid}.nii.gz", v["spacing"])
            rows.append({"id": sid, "image": f"images/{sid}.nii.gz", "mask": f"labels/{sid}.nii.gz", "split": _split_of(i, n),
                         "spacing": "x".join(f"{x:g}" for x in v["spacing"])})
            marks[sid] = {k: [round(x, 3) for x in c] for k, c in v["landmarks"].items()}
        _write_manifest(tmp, rows, marks)

    return _atomic_dir(Path(out_dir), fill)


def cache_root() -> Path:
    return Path(os.environ.get("LOCALDISC_CACHE") or Path.home() / ".cache" / "localdisc") / "synthetic"


def parse_spec(rest: str, default_n: int, default_size: tuple[int, ...], name: str) -> tuple[int, tuple[int, ...], int]:
    """``N[:SIZE[:SEED]]`` (SIZE like 256x256 or 48x64x64) -> (n, size, data seed)."""
    parts = [p for p in str(rest or "").split(":")]
    try:
        n = int(parts[0]) if parts and parts[0] else default_n
        size = tuple(int(v) for v in parts[1].lower().split("x")) if len(parts) > 1 and parts[1] else default_size
        seed = int(parts[2]) if len(parts) > 2 and parts[2] else 0
    except ValueError as e:
        raise DataError(f"{name}:{rest}: cannot parse; write {name}[:N[:{'x'.join(map(str, default_size))}[:SEED]]]") from e
    if n < 1 or len(size) != len(default_size) or min(size) < 16 or len(parts) > 3:
        raise DataError(f"{name}:{rest}: need N >= 1 and a {len(default_size)}-D size >= 16 per axis, e.g. {name}:{default_n}:{'x'.join(map(str, default_size))}")
    return n, size, seed


def _samples(folder: Path, target: str, task: str, classes: list[str]) -> list[Sample]:
    marks = json.loads((folder / "landmarks.json").read_text())
    out = read_manifest(folder / "manifest.csv")
    for s in out:
        meta = s.extra.pop("meta", {})
        if target != "mask":
            s.mask = str(folder / meta[target])
        s.landmarks = {k: tuple(v) for k, v in marks[s.id].items()}
        s.extra.update(task=task, class_names=list(classes), mask_values="binary" if len(classes) == 2 else "index")
        if "eye" in meta:
            s.extra["eye"] = meta["eye"]
    return out


def _fundus_folder(rest: str) -> Path:
    n, size, seed = parse_spec(rest, 40, (256, 256), "synthetic-fundus")
    return generate_fundus_dataset(cache_root() / f"fundus-{n}-{'x'.join(map(str, size))}-{seed}", n, size, seed)


@register_layout("synthetic-fundus")
def synthetic_fundus(rest: str = "", seed: int = 0, **_opts) -> list[Sample]:
    """Synthetic fundus photographs, target = vessels (with FOV masks and disc/fovea landmarks)."""
    return _samples(_fundus_folder(rest), "mask", "vessel", FUNDUS_CLASSES)


@register_layout("synthetic-fundus-disc")
def synthetic_fundus_disc(rest: str = "", seed: int = 0, **_opts) -> list[Sample]:
    """The synthetic fundus images with the optic disc as target."""
    return _samples(_fundus_folder(rest), "disc", "disc", DISC_CLASSES)


@register_layout("synthetic-3d")
def synthetic_3d(rest: str = "", seed: int = 0, **_opts) -> list[Sample]:
    """Synthetic volumes, classes tube (1) and blob (2), anisotropic spacing."""
    n, size, dseed = parse_spec(rest, 12, (48, 64, 64), "synthetic-3d")
    folder = generate_volume_dataset(cache_root() / f"volumes-{n}-{'x'.join(map(str, size))}-{dseed}", n, size, dseed)
    return _samples(folder, "mask", "segmentation", VOLUME_CLASSES)
