"""Public-dataset layouts: ``LAYOUT:/path`` spec strings -> samples.

Layouts (see :func:`localdisc.data.sources.resolve_source`):

- ``ph2:/data/PH2``: dermoscopy lesions; ``split.csv`` (140 train / 60 test), masks 0/255;
- ``cxr:/data/CXR``: chest X-ray, masks composed from per-structure bounding-box crops
  (:func:`compose_mask`); 98 images from ``split.csv`` (66 train / 32 test);
- ``drive:/data/DRIVE``: ``training/`` and ``test/`` folders (images, 1st_manual, mask);
- ``stare:/data/STARE``: ``stare-images/`` + ``labels-ah/`` (``.ppm`` or ``.ppm.gz``), FOV derived;
- ``chase:/data/CHASE_DB1``: ``Image_01L.jpg`` + ``Image_01L_1stHO.png`` in one folder, FOV derived;
- ``hrf:/data/HRF``: ``images/``, ``manual1/``, ``mask/``;
- ``msd:/data/Task02_Heart``: ``imagesTr/`` + ``labelsTr/`` NIfTI pairs.

Each sample's ``extra`` holds ``class_names`` and ``task`` ("vessel" for fundus vessel sets, so
evaluation adds AUC and accuracy inside the field of view; "segmentation" otherwise).
Layout options arrive as keyword arguments; unknown ones are ignored so callers can pass a
shared option dict.
"""

from __future__ import annotations

import csv
from pathlib import Path

from ..errors import DataError
from .folders import list_files, pair_by_stem, read_msd, read_pairs, stem_of
from .io import require_file
from .records import Sample
from .registry import register_layout

VESSEL = {"class_names": ["background", "vessel"], "task": "vessel", "mask_values": "binary"}


def _root(path: str, name: str) -> Path:
    root = Path(path)
    if not root.is_dir():
        raise DataError(f"{path}: {name} folder not found")
    return root


def _dir(root: Path, *names: str) -> Path:
    for n in names:
        if (root / n).is_dir():
            return root / n
    raise DataError(f"{root}: expected a subfolder {' or '.join(repr(n) for n in names)}")


def _read_csv(path: Path) -> list[dict[str, str]]:
    require_file(path, "a CSV file")  # a FIFO named split.csv would block open() forever
    try:
        with open(path, newline="", encoding="utf-8-sig") as f:
            return list(csv.DictReader(f))
    except OSError as e:
        raise DataError(f"{path}: cannot read ({e})") from e


# ---------------------------------------------------------------- PH2 (dermoscopy)
@register_layout("ph2")
def ph2(path: str, seed: int = 0, **opts) -> list[Sample]:
    """PH2: ``split.csv`` (image, mask, split, diagnosis) or, without it, images/ + lesion_masks/."""
    root = _root(path, "PH2")
    extra = {"class_names": ["background", "lesion"], "task": "segmentation", "mask_values": "binary"}
    split_csv = root / "split.csv"
    if not split_csv.is_file():
        return read_pairs(_dir(root, "images"), _dir(root, "lesion_masks", "masks"), **extra)
    samples = []
    for i, row in enumerate(_read_csv(split_csv), start=2):
        image, mask = root / row["image"], root / row["mask"]
        for p in (image, mask):
            if not p.is_file():
                raise DataError(f"{split_csv} row {i}: file {p} not found")
        samples.append(Sample(id=stem_of(image), image=str(image), mask=str(mask), split=row["split"] or None,
                              extra={**extra, "diagnosis": int(row.get("diagnosis") or -1)}))
    return samples


# ---------------------------------------------------------------- CXR (bounding-box crops)
CXR_STRUCTURES = ["Left Lung", "Right Lung", "Cardiomediastinum"]


def _structures_opt(value) -> list[str]:
    if value is None:
        return list(CXR_STRUCTURES)
    names = [v.strip() for v in value.split(",")] if isinstance(value, str) else [str(v) for v in value]
    if not names or any(not n for n in names):
        raise DataError(f"cxr: empty structure name in structures={value!r}")
    return names


@register_layout("cxr")
def cxr(path: str, seed: int = 0, structures=None, **opts) -> list[Sample]:
    """COVID-19 chest X-ray segmentations, composed into one class map per image.

    Classes: 0 background, then ``structures`` in order (default 1 Left Lung, 2 Right Lung,
    3 Cardiomediastinum; names as in structure.csv's ``Template Name``).
    Overlap rule: where outlines overlap (the lungs overlap the cardiomediastinum: on this data
    about 29% of the left lung and 8% of the right lung lie inside the cardiomediastinum
    outline), the structure listed LATER wins, so by default the cardiomediastinum keeps the
    whole heart shadow and the lungs are what is visible beside it (the JSRT/SCR convention).
    Left/right are the patient's: the left lung lies on the image's right half.
    """
    root = _root(path, "CXR")
    names = _structures_opt(structures)
    split_rows = _read_csv(root / "split.csv") if (root / "split.csv").is_file() else None
    if split_rows is None:
        raise DataError(f"{root}: split.csv not found (expected columns image, structure_key, patient, split)")
    rows_by_key: dict[str, list[dict[str, str]]] = {}
    for r in _read_csv(root / "structure.csv"):
        if r.get("Mask"):  # rows without a crop are unusable
            rows_by_key.setdefault(r["Image"], []).append(r)
    class_names = ["background"] + names
    flip = [(class_names.index("Left Lung"), class_names.index("Right Lung"))] if {"Left Lung", "Right Lung"} <= set(names) else []
    samples = []
    for i, row in enumerate(split_rows, start=2):
        image = root / row["image"]
        if not image.is_file():
            raise DataError(f"{root / 'split.csv'} row {i}: image {image} not found")
        rows = rows_by_key.get(row["structure_key"], [])
        crops = []
        for r in rows:
            if r["Template Name"] in names:
                t, l, w, h = (int(float(r[k])) for k in ("Top", "Left", "Width", "Height"))
                crops.append((r["Template Name"], str(root / r["Mask"]), t, l, w, h))
        missing = set(names) - {c[0] for c in crops}
        if missing:
            raise DataError(f"{root / 'structure.csv'}: image {row['image']} (key {row['structure_key']}) has no outline of {sorted(missing)}")
        width, height = (int(v) for v in rows[0]["Resolution"].split("x"))
        samples.append(Sample(
            id=stem_of(image), image=str(image), split=row["split"] or None,
            extra={"mask_composer": "cxr", "structures": names, "crops": crops, "size": (height, width),
                   "class_names": class_names, "flip_pairs": flip, "channels": 1, "task": "segmentation",
                   "patient": row.get("patient")},
        ))
    return samples


# ---------------------------------------------------------------- fundus vessel sets
def _vessel_samples(images: dict[str, Path], manual: dict[str, Path], fov: dict[str, Path] | None, split=None, **extra) -> list[Sample]:
    out = []
    for s, p in sorted(images.items()):
        e = {**VESSEL, "class_names": list(VESSEL["class_names"]), **extra}
        if fov is None:
            e["fov_from_image"] = True
        out.append(Sample(id=s, image=str(p), mask=str(manual[s]) if s in manual else None,
                          fov=str(fov[s]) if fov and s in fov else None, split=split, extra=e))
    return out


@register_layout("drive")
def drive(path: str, seed: int = 0, **opts) -> list[Sample]:
    """DRIVE: ``training/`` and ``test/``, each with images/ (21_training.tif), 1st_manual/
    (21_manual1.gif) and mask/ (21_training_mask.gif). The folders give the split; a test/
    without 1st_manual/ (some redistributions) yields unlabeled test images."""
    root = _root(path, "DRIVE")
    out = []
    for sub, split in (("training", "train"), ("test", "test")):
        if not (root / sub).is_dir():
            continue
        images = list_files(_dir(root / sub, "images"))
        # 21_training -> "21": the number is what images, manuals and FOV masks share.
        num = {s.split("_")[0]: s for s in images}
        manual = {}
        if (root / sub / "1st_manual").is_dir():
            by_num = pair_by_stem({k: v for k, v in ((n, images[s]) for n, s in num.items())},
                                  list_files(root / sub / "1st_manual"), root / sub / "1st_manual", "manual segmentation")
            manual = {num[n]: p for n, p in by_num.items()}
        fov = {}
        if (root / sub / "mask").is_dir():
            fov = pair_by_stem(images, list_files(root / sub / "mask"), root / sub / "mask", "field-of-view mask")
        out += _vessel_samples(images, manual, fov or None, split=split)
    if not out:
        raise DataError(f"{root}: expected DRIVE subfolders training/ and/or test/")
    return out


@register_layout("stare")
def stare(path: str, seed: int = 0, annotator: str = "ah", **opts) -> list[Sample]:
    """STARE: ``stare-images/im0001.ppm[.gz]`` + ``labels-ah/im0001.ah.ppm[.gz]`` (``annotator``
    "ah" Hoover or "vk" Kouznetsova). Only the labeled images are used. No FOV files: see
    :func:`derive_fov`."""
    root = _root(path, "STARE")
    images = list_files(_dir(root, "stare-images", "images"))
    labels_dir = _dir(root, f"labels-{annotator}")
    # Hoover's 20 labeled images are usually shipped with the rest of the 400: keep labeled ones.
    labels = pair_by_stem(images, list_files(labels_dir), labels_dir, "label", required=False)
    if not labels:
        raise DataError(f"{labels_dir}: no labels match images in {root / 'stare-images'}")
    return _vessel_samples({s: images[s] for s in labels}, labels, None)


@register_layout("chase")
def chase(path: str, seed: int = 0, annotator: str = "1stHO", **opts) -> list[Sample]:
    """CHASE_DB1: ``Image_01L.jpg`` with ``Image_01L_1stHO.png`` (and _2ndHO) in one folder."""
    root = _root(path, "CHASE_DB1")
    files = list_files(root)
    images = {s: p for s, p in files.items() if p.suffix.lower() in (".jpg", ".jpeg")}
    labels = {s: p for s, p in files.items() if s.endswith("_" + annotator)}
    if not images:
        raise DataError(f"{root}: no CHASE_DB1 images (Image_01L.jpg, ...) found")
    return _vessel_samples(images, pair_by_stem(images, labels, root, f"{annotator} label"), None)


@register_layout("hrf")
def hrf(path: str, seed: int = 0, **opts) -> list[Sample]:
    """HRF: ``images/01_dr.JPG``, ``manual1/01_dr.tif``, ``mask/01_dr_mask.tif``."""
    root = _root(path, "HRF")
    images = list_files(_dir(root, "images"))
    manual = pair_by_stem(images, list_files(_dir(root, "manual1")), root / "manual1", "manual segmentation")
    fov = pair_by_stem(images, list_files(root / "mask"), root / "mask", "field-of-view mask") if (root / "mask").is_dir() else None
    return _vessel_samples(images, manual, fov)


@register_layout("msd")
def msd(path: str, seed: int = 0, **opts) -> list[Sample]:
    """Medical Segmentation Decathlon task: ``imagesTr/`` + ``labelsTr/`` (+ dataset.json labels)."""
    return read_msd(_root(path, "MSD task"))
