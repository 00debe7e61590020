"""Data for supervised fine-tuning (docs/method.md): honest splits, label budgets, patches.

Splits (honest protocol): the data's own split (layout, manifest) is kept; images without
one are assigned train/test by ``split_seed``. Validation is carved from TRAIN only
(``val_fraction``, also by ``split_seed``, so it stays fixed across seeds and budgets), then
the label budget (``labels``) picks a nested subset of the remaining training images by
``seed``. The validation images are labeled images on top of the budget; the training loop
(:mod:`localdisc.train.finetune`) writes every id to ``splits.json`` so a run can be audited.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Sequence

import torch

from ..data.datasets import ImageDataset, num_channels_of, require_foreground
from ..data.records import Sample
from ..data.sources import resolve_source
from ..data.splits import assign_splits, carve_validation, label_budget
from ..errors import DataError
from .finetune_config import FinetuneConfig


def assigned_splits(samples: list[Sample], split_seed: int, test_fraction: float) -> list[Sample]:
    """Keep the data's splits; give unassigned samples train/test (no val: it is carved later)."""
    if all(s.split is not None for s in samples):
        return samples

    return assign_splits(samples, seed=split_seed, val_fraction=0.0, test_fraction=test_fraction)


def finetune_samples(cfg: FinetuneConfig, everything: list[Sample] | None = None) -> dict[str, list[Sample]]:
    """{"train": labeled budget, "val": validation, "test": test} following the module rules.
    ``everything``: a list that receives every sample of the dataset (the training resolution is
    the dataset's, not the label subset's)."""

    samples = assigned_splits(resolve_source(cfg.data, seed=cfg.split_seed), cfg.split_seed, cfg.test_fraction)
    if everything is not None:
        everything.extend(samples)
    train = [s for s in samples if s.split == "train"]
    val = [s for s in samples if s.split == "val"]
    test = [s for s in samples if s.split == "test"]
    if not train:
        raise DataError(f"{cfg.data}: no training images (splits present: {sorted({str(s.split) for s in samples})})")
    if not val and cfg.val_fraction and len(train) >= 2:
        train, val = carve_validation(train, cfg.val_fraction, cfg.split_seed)
    if cfg.labels:
        # 4 and 4.0 mean four images; 1.0 and 0.25 are fractions (1.0 = all).
        labels = int(cfg.labels) if float(cfg.labels).is_integer() and cfg.labels > 1 or isinstance(cfg.labels, int) else float(cfg.labels)
        train = label_budget(train, labels, cfg.seed)
    return {"train": train, "val": val, "test": test}


def infer_num_classes(datasets: Sequence[ImageDataset], class_names: list[str] | None) -> int:
    """Classes from the data's class names, else from the label values of EVERY loaded mask,
    taken together: they must be 0..C-1 without gaps. A mask whose values fall outside the
    others' scheme (a 16-bit {0, 1000} mask among 0/255 ones, one {0, 7} mask among binary
    ones) is refused with its name and values instead of silently training a 1001-class model."""
    if class_names:
        _require_named(datasets, class_names)
        return max(2, len(class_names))
    found: dict[int, list[str]] = {}
    for ds in datasets:
        for i in range(len(ds)):
            ds[i]  # loads the mask (cached), recording its values
            for v in ds.mask_values.get(i, []):
                found.setdefault(int(v), []).append(str(ds.samples[i].mask or ds.samples[i].image))
    values = sorted(found)
    expected = list(range(len(values)))
    if values != expected:
        odd = [v for v in values if v >= len(values)]
        files = sorted({f for v in odd for f in found[v]})
        raw = _raw_values(datasets, files[0]) or sorted(v for v in values if files[0] in found[v])
        raise DataError(f"{files[0]}: label values {raw} do not fit the dataset's "
                        f"label scheme (all masks together hold {values[:8]}{'...' if len(values) > 8 else ''}; classes must be 0..C-1)"
                        f"{f'; also in {len(files) - 1} other file(s)' if len(files) > 1 else ''}. Fix the mask, or pass --num-classes "
                        "if some classes are truly absent from the labeled images")
    return max(2, len(values))


def _require_named(datasets: Sequence[ImageDataset], class_names: list[str]) -> None:
    """Every mask value must be a named class (a dataset.json naming 3 classes over masks that hold 5 is refused)."""
    for ds in datasets:
        for i in range(len(ds)):
            ds[i]
            beyond = [int(v) for v in ds.mask_values.get(i, []) if int(v) >= len(class_names)]
            if beyond:
                raise DataError(f"{ds.samples[i].mask or ds.samples[i].image}: mask holds class {beyond[0]}, but the data names only "
                                f"{len(class_names)} classes {class_names} (values 0..{len(class_names) - 1}); fix the mask or the class names")


def _raw_values(datasets: list[Any], path: str) -> list:
    """The values the mask file itself holds (e.g. 255), not the class indices they became."""
    for ds in datasets:
        raw = getattr(ds, "raw_mask_values", {})
        for i, sample in enumerate(ds.samples):
            if str(sample.mask or sample.image) == path and i in raw:
                return [int(v) if float(v).is_integer() else float(v) for v in raw[i]][:8]
    return []


def sample_patches(images: torch.Tensor, labels: torch.Tensor, patch: Sequence[int], fg_prob: float) -> tuple[torch.Tensor, torch.Tensor]:
    """Random crops (B, C, *patch) / (B, *patch); a crop is centred on a random foreground voxel
    with probability ``fg_prob``. Random numbers: torch global CPU RNG, a fixed count per sample."""
    size = images.shape[2:]
    if not patch or tuple(patch) == tuple(size):
        return images, labels
    out_x, out_y = [], []
    for b in range(images.shape[0]):
        u, r, starts = float(torch.rand(())), float(torch.rand(())), torch.rand(len(size))
        fg = torch.nonzero(labels[b] > 0) if u < fg_prob else None
        if fg is not None and len(fg):
            centre = fg[min(int(r * len(fg)), len(fg) - 1)].tolist()
            lo = [min(max(c - p // 2, 0), s - p) for c, p, s in zip(centre, patch, size)]
        else:
            lo = [int(t * (s - p + 1)) for t, p, s in zip(starts.tolist(), patch, size)]
        sl = tuple(slice(a, a + p) for a, p in zip(lo, patch))
        out_x.append(images[(b, slice(None)) + sl])
        out_y.append(labels[(b,) + sl])
    return torch.stack(out_x), torch.stack(out_y)


@dataclass
class LabeledData:
    """The labeled images of one fine-tuning run, loaded and checked before anything is written."""

    parts: dict[str, list]  # "train" / "val" / "test" -> samples
    train: ImageDataset
    val: ImageDataset | None
    channels: int
    num_classes: int
    class_names: list[str]
    flip_pairs: list[tuple[int, int]]
    task: str


def load_labeled_data(cfg: FinetuneConfig, parts: dict[str, list]) -> LabeledData:
    """Datasets of the split ``parts``. Every labeled image is read and checked now (train and
    validation are cached for training; test images only checked), so that a broken file fails
    here and not after hours of training."""
    first = parts["train"][0]
    class_names = first.extra.get("class_names")
    channels = cfg.in_channels or int(first.extra.get("channels") or 0) or num_channels_of(parts["train"])
    nc = cfg.num_classes or None
    train_ds = ImageDataset(parts["train"], cfg.image_size, channels, with_masks=True, num_classes=nc)
    val_ds = ImageDataset(parts["val"], cfg.image_size, channels, with_masks=True, num_classes=nc) if parts["val"] else None
    test_ds = ImageDataset(parts["test"], None, channels, with_masks=True, num_classes=nc, cache=False) if parts["test"] else None
    for ds in (train_ds, val_ds, test_ds):
        for i in range(len(ds) if ds is not None else 0):
            ds[i]
    labeled = [d for d in (train_ds, val_ds) if d is not None]
    require_foreground(labeled)  # every mask empty: nothing to learn, say so
    num_classes = cfg.num_classes or infer_num_classes(labeled, class_names)
    if not class_names or len(class_names) != num_classes:
        class_names = ["background"] + [f"class{c}" for c in range(1, num_classes)]
    flip_pairs = [tuple(p) for p in first.extra.get("flip_pairs", ())]
    if any(c >= num_classes for p in flip_pairs for c in p):
        raise DataError(f"{cfg.data}: flip pairs {[list(p) for p in flip_pairs]} name a class beyond the {num_classes} classes (0..{num_classes - 1})")
    return LabeledData(parts, train_ds, val_ds, channels, num_classes, list(class_names), flip_pairs, first.extra.get("task", "segmentation"))

__all__ = ["assigned_splits", "finetune_samples", "infer_num_classes", "sample_patches"]
