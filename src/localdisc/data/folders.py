"""Generic readers: a folder of images (optionally paired with masks) and a CSV manifest.

Folder forms accepted by :func:`read_folder` (checked in this order):

- MSD style: ``imagesTr/`` + ``labelsTr/`` (NIfTI volumes; ``imagesTs/`` is ignored, it has
  no labels);
- ``images/`` + one mask folder among ``masks/``, ``labels/``, ``gt/``, ``annotations/``,
  optionally a field-of-view folder ``fov/`` or ``mask_fov/``;
- ``images/`` alone, or image files directly in the folder: unlabeled images (image files
  directly in the folder next to a ``masks/`` folder are paired too);
- each image may be a file or a folder of ``.dcm`` slices (a DICOM series).

Images and masks are paired by file stem with tolerant suffix matching: a mask named
``X.png``, ``X_mask.png``, ``X_lesion.png``, ``X_manual1.gif``, ``X_seg.nii.gz`` (and
similar, see :data:`MASK_TOKENS`) belongs to the image with stem ``X``. Every image needs a
mask and vice versa; mismatches raise :class:`DataError` listing some names. Output is
sorted by id, so it is deterministic.
"""

from __future__ import annotations

import csv
import math
import os
import re
from pathlib import Path

from ..errors import DataError, shorten
from .dataset_json import apply_dataset_info, read_dataset_json
from .io import IMAGE_SUFFIXES, _npy_header, is_volume, require_file, suffix_of
from .records import Sample

MASK_DIRS = ("masks", "labels", "gt", "annotations")
FOV_DIRS = ("fov", "mask_fov")
FILE_SUFFIXES = IMAGE_SUFFIXES + (".nii", ".nii.gz", ".npy", ".dcm")
# Trailing name tokens that mark a label/FOV file of the image with the remaining stem.
MASK_TOKENS = (
    "mask", "masks", "lesion", "seg", "segmentation", "label", "labels", "gt", "annotation",
    "manual", "manual1", "manual2", "1stho", "2ndho", "ah", "vk", "fov", "roi",
)
_TOKEN_RE = re.compile(r"[_\-. ](" + "|".join(MASK_TOKENS) + r")$", re.IGNORECASE)
SPLITS = {"train": "train", "training": "train", "val": "val", "valid": "val", "validation": "val", "test": "test", "testing": "test"}


def stem_of(path: Path) -> str:
    """File name without its (possibly double, ``.nii.gz`` / ``.ppm.gz``) suffix."""
    name = path.name
    if path.is_dir():  # a DICOM series folder is named by its folder name
        return name
    if name.lower().endswith(".gz"):
        name = name[:-3]
    suf = suffix_of(Path(name))
    return name[: len(name) - len(suf)] if suf else name


def _is_data_file(p: Path) -> bool:
    if p.name.startswith("."):  # hidden files, macOS "._X.nii.gz" resource forks
        return False
    if p.is_dir():  # a DICOM series folder
        return any(p.glob("*.dcm"))
    name = p.name.lower()[:-3] if p.name.lower().endswith(".gz") and not p.name.lower().endswith(".nii.gz") else p.name.lower()
    return p.is_file() and suffix_of(Path(name)) in FILE_SUFFIXES


def list_files(folder: Path) -> dict[str, Path]:
    """stem -> file for the image/volume files in ``folder``; duplicate stems raise."""
    out: dict[str, Path] = {}
    for p in sorted(folder.iterdir()):
        if not _is_data_file(p):
            continue
        s = stem_of(p)
        if s in out:
            raise DataError(f"{folder}: duplicate stem {s!r} ({out[s].name} and {p.name}); keep one file per image")
        out[s] = p
    return out


def match_stem(stem: str, image_stems: set[str]) -> str | None:
    """Image stem a mask/FOV stem belongs to: exact, after stripping tokens, or longest prefix."""
    s = stem
    while True:
        if s in image_stems:
            return s
        stripped = _TOKEN_RE.sub("", s)
        if stripped == s:
            break
        s = stripped
    best = None
    for im in image_stems:  # "X_anything" belongs to "X" when X is the longest such image stem
        if stem.startswith(im) and len(stem) > len(im) and stem[len(im)] in "_-. " and (best is None or len(im) > len(best)):
            best = im
    return best


def pair_by_stem(images: dict[str, Path], others: dict[str, Path], folder: Path, what: str = "mask", required: bool = True) -> dict[str, Path]:
    """image stem -> matching file among ``others``; every one must match (and, if required, every image)."""
    stems = set(images)
    paired: dict[str, Path] = {}
    orphans = []
    for ostem, p in others.items():
        m = match_stem(ostem, stems)
        if m is None:
            orphans.append(p.name)
        elif m in paired:
            raise DataError(f"{folder}: two {what} files for image {m!r}: {paired[m].name} and {p.name}")
        else:
            paired[m] = p
    if orphans:
        raise DataError(f"{folder}: {len(orphans)} {what} file(s) without an image, e.g. {orphans[:5]}")
    missing = sorted(stems - set(paired))
    if required and missing:
        raise DataError(f"{folder}: {len(missing)} image(s) without a {what}, e.g. {[images[m].name for m in missing[:5]]}")
    return paired


def _first_dir(folder: Path, names: tuple[str, ...]) -> Path | None:
    for n in names:
        if (folder / n).is_dir():
            return folder / n
    return None


def _nonempty(folder: Path, what: str = "image") -> dict[str, Path]:
    files = list_files(folder)
    if not files:
        listing = sorted(p.name for p in folder.iterdir())[:5]
        raise DataError(f"{folder}: no {what} files found" + (f" (it holds {listing})" if listing else " (empty folder)") + f"; readable suffixes: {', '.join(FILE_SUFFIXES)}")
    return files


def read_pairs(image_dir: Path, mask_dir: Path | None, fov_dir: Path | None = None, **extra) -> list[Sample]:
    images = _nonempty(image_dir)
    masks = pair_by_stem(images, _nonempty(mask_dir, "mask"), mask_dir) if mask_dir is not None else {}
    fovs = pair_by_stem(images, _nonempty(fov_dir, "field-of-view"), fov_dir, "field-of-view mask") if fov_dir is not None else {}
    return [
        Sample(id=s, image=str(p), mask=str(masks[s]) if s in masks else None, fov=str(fovs[s]) if s in fovs else None, extra=dict(extra))
        for s, p in sorted(images.items())
    ]


def read_folder(path: str | Path) -> list[Sample]:
    """Samples from a folder (see module docstring for the accepted forms)."""
    folder = Path(path)
    if not folder.is_dir():
        raise DataError(f"{folder}: not a folder")
    if (folder / "imagesTr").is_dir():
        return read_msd(folder)
    image_dir = folder / "images" if (folder / "images").is_dir() else folder
    mask_dir, fov_dir = _first_dir(folder, MASK_DIRS), _first_dir(folder, FOV_DIRS)
    if image_dir == folder and not list_files(folder):
        subdirs = sorted(p.name for p in folder.iterdir() if p.is_dir())
        if subdirs:
            raise DataError(f"{folder}: no images found; expected image files or an images/ subfolder (with {'/ '.join(MASK_DIRS)}), found subfolders {subdirs[:5]}")
    return read_pairs(image_dir, mask_dir, fov_dir)


def read_msd(path: str | Path, **_opts) -> list[Sample]:
    """Medical Segmentation Decathlon task folder: ``imagesTr/`` + ``labelsTr/`` (+ dataset.json)."""

    folder = Path(path)
    if not (folder / "imagesTr").is_dir():
        raise DataError(f"{folder}: not an MSD task folder (no imagesTr/)")
    label_dir = folder / "labelsTr" if (folder / "labelsTr").is_dir() else None
    samples = read_pairs(folder / "imagesTr", label_dir, task="segmentation", mask_values="index")
    apply_dataset_info(samples, read_dataset_json(folder / "dataset.json"))
    return samples


def parse_spacing(text: str, where: str, dims: int | None = None) -> tuple[float, ...] | None:
    """Spacing cell ("0.5x0.5", "1,0.5,0.5") -> mm per pixel/voxel; empty -> None. Every value
    must be a finite positive number, and with ``dims`` there must be one per spatial axis."""
    text = (text or "").strip()
    if not text:
        return None
    try:
        vals = tuple(float(v) for v in re.split(r"[x,;\s]+", text) if v)
    except ValueError as e:
        raise DataError(f"{where}: cannot parse spacing {shorten(repr(text), 60)}; write e.g. 0.5x0.5 or 1,0.5,0.5") from e
    if not vals or any(not math.isfinite(v) or v <= 0 for v in vals):
        raise DataError(f"{where}: spacing {shorten(repr(text), 60)} must be positive finite numbers (mm per pixel)")
    if dims is not None and len(vals) != dims:
        kind = "a 2-D image" if dims == 2 else "a 3-D volume"
        raise DataError(f"{where}: spacing {shorten(repr(text), 60)} has {len(vals)} value(s); {kind} needs {dims}, one per axis")
    return vals


def _spatial_dims(image: str) -> int:
    """2 for a 2D image, 3 for a volume; a .npy array's from its header (it may be either)."""

    p = Path(image)
    if p.is_file() and suffix_of(p) == ".npy":
        return len(_npy_header(p)[0])
    return 3 if is_volume(p) else 2


def read_manifest(csv_path: str | Path) -> list[Sample]:
    """CSV manifest: columns image (required), mask, fov, split, spacing, id; other columns go to
    ``extra["meta"]``. Rows keep file order.

    Paths: absolute paths are taken as written (the author of the manifest chose them); relative
    paths are relative to the CSV's folder and must stay inside it (``../`` that climbs out is
    refused, so a manifest from elsewhere cannot reach arbitrary files by accident), unless the
    environment sets LOCALDISC_MANIFEST_OUTSIDE=1."""

    csv_path = Path(csv_path)
    base = csv_path.parent
    outside_ok = os.environ.get("LOCALDISC_MANIFEST_OUTSIDE", "") == "1"
    require_file(csv_path, "a CSV manifest")
    try:
        with open(csv_path, newline="", encoding="utf-8-sig") as f:
            reader = csv.DictReader(f)
            rows = list(reader)
            columns = [c.strip() for c in reader.fieldnames or []]
    except FileNotFoundError as e:
        raise DataError(f"{csv_path}: file not found") from e
    except (UnicodeDecodeError, csv.Error) as e:
        raise DataError(f"{csv_path}: unreadable CSV ({e})") from e
    if not rows:
        raise DataError(f"{csv_path}: manifest has no rows")
    if "image" not in columns:
        raise DataError(f"{csv_path}: manifest needs an 'image' column (has {columns})")
    samples, seen = [], set()
    for i, raw in enumerate(rows, start=2):  # line 1 is the header
        where = f"{csv_path} row {i}"
        if None in raw:  # csv's restkey: more cells than header columns
            raise DataError(f"{where}: more values than header columns {columns} (quote values holding commas)")
        row = {k.strip(): (v or "").strip() for k, v in raw.items()}

        def path_of(col: str) -> str | None:
            val = row.get(col, "")
            if not val:
                return None
            p = Path(val) if Path(val).is_absolute() else base / val
            if not Path(val).is_absolute() and not outside_ok:
                root = os.path.normpath(os.path.abspath(base))
                if os.path.commonpath([root, os.path.normpath(os.path.join(root, val))]) != root:
                    raise DataError(f"{where}: {col} path {val!r} leaves the manifest's folder; use a path inside it, an absolute "
                                    "path, or set LOCALDISC_MANIFEST_OUTSIDE=1 to allow it")
            if not p.exists():
                raise DataError(f"{where}: {col} file {shorten(repr(val), 100)} not found (looked at {p})")
            if not (p.is_file() or p.is_dir()):  # a folder is a DICOM series; a FIFO would hang the reader
                raise DataError(f"{where}: {col} {shorten(repr(val), 100)} is not a regular file (a FIFO, device or socket)")
            return str(p)

        image = path_of("image")
        if image is None:
            raise DataError(f"{where}: empty image path")
        split = row.get("split", "").lower() or None
        if split is not None and split not in SPLITS:
            raise DataError(f"{where}: unknown split {row['split']!r}; use train, val or test")
        sid = row.get("id") or stem_of(Path(image))
        if sid in seen:
            raise DataError(f"{where}: duplicate id {sid!r}; add an 'id' column to tell the rows apart")
        seen.add(sid)
        meta = {k: v for k, v in row.items() if k not in ("image", "mask", "fov", "split", "spacing", "id")}
        samples.append(Sample(
            id=sid, image=image, mask=path_of("mask"), fov=path_of("fov"),
            split=SPLITS[split] if split else None, spacing=parse_spacing(row.get("spacing", ""), where, _spatial_dims(image)),
            extra={"meta": meta} if meta else {},
        ))
    # an MSD task's dataset.json beside the manifest names the classes (and may declare flip pairs, channels)
    apply_dataset_info(samples, read_dataset_json(base / "dataset.json", strict=False))
    return samples
