"""``dataset.json``: what a folder of labeled images says about its classes.

The Medical Segmentation Decathlon's file names the label values (``"labels": {"0": "background",
"1": "Anterior", ...}``). It is read from an MSD task folder and from beside a CSV manifest (a
fixed split of an MSD task is such a manifest). localdisc adds two optional keys for what a
file list cannot say:

- ``"flip_pairs": [[1, 2]]``: classes that swap under a left/right flip (left and right lung),
  so that flip augmentation swaps their labels instead of teaching that left may be right;
- ``"channels": 1``: read every image with this many channels (grey X-rays saved as RGB JPEGs).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import DataError


@dataclass
class DatasetInfo:
    class_names: list[str] = field(default_factory=list)
    flip_pairs: list[tuple[int, int]] = field(default_factory=list)
    channels: int = 0  # 0 = from the images


OURS = ("labels", "flip_pairs", "channels")


def _labels(labels: Any) -> list[str]:
    """Names in label order from MSD's {"0": "background", ...} or nnU-Net v2's {"background": 0, ...}."""
    if not isinstance(labels, dict):
        raise ValueError("'labels' is not an object of value -> name")
    if labels and all(type(v) is int for v in labels.values()):  # nnU-Net v2: name -> value
        labels = {str(v): k for k, v in labels.items()}
    try:
        by_value = {int(k): v for k, v in labels.items()}
    except ValueError as e:
        raise ValueError(f"label values must be whole numbers, got {sorted(labels)[:5]}") from e
    values = sorted(by_value)
    if values != list(range(len(values))):  # a gap would shift every later class's name
        raise ValueError(f"label values {values} are not 0..{len(values) - 1}")
    if not all(isinstance(by_value[v], str) and by_value[v].strip() for v in values):
        raise ValueError(f"label names must be non-empty text, got {[by_value[v] for v in values][:5]}")
    return [by_value[v] for v in values]


def _parse(record: Any) -> DatasetInfo:
    if not isinstance(record, dict):
        raise ValueError("not a JSON object")
    names = _labels(record.get("labels", {}))
    pairs = record.get("flip_pairs", [])
    if not isinstance(pairs, list) or not all(isinstance(p, list) and len(p) == 2 and all(type(c) is int and c > 0 for c in p) for p in pairs):
        raise ValueError(f"'flip_pairs' must be a list of [class, class] pairs of foreground classes, got {pairs!r}")
    classes = [c for p in pairs for c in p]
    if len(set(classes)) != len(classes):  # a class in two pairs (or paired with itself) has no single mirror
        raise ValueError(f"'flip_pairs' {pairs}: each class may appear in one pair, once")
    if names and any(c >= len(names) for c in classes):
        raise ValueError(f"'flip_pairs' {pairs} names a class beyond the labels 0..{len(names) - 1}")
    channels = record.get("channels", 0)
    if type(channels) is not int or channels not in (0, 1, 3):
        raise ValueError(f"'channels' must be 1 or 3, got {channels!r}")
    return DatasetInfo(names, [(a, b) for a, b in pairs], channels)


def read_dataset_json(path: Path, strict: bool = True) -> DatasetInfo | None:
    """The file's :class:`DatasetInfo`; None when there is no file. A file that says something
    localdisc reads (``labels``, ``flip_pairs``, ``channels``) but cannot be read is an error
    naming it. Without ``strict`` (beside a manifest, whose folder may hold another tool's
    dataset.json), a file with none of those keys, or not JSON at all, is ignored."""
    if not path.is_file():
        return None
    try:
        record = json.loads(path.read_text(encoding="utf-8-sig"))
    except (ValueError, UnicodeDecodeError, RecursionError, OSError) as e:
        if strict:
            raise DataError(f"{path}: unreadable dataset.json ({str(e)[:200]})") from e
        return None
    if not strict and not (isinstance(record, dict) and any(k in record for k in OURS)):
        return None
    try:
        return _parse(record)
    except (ValueError, TypeError) as e:
        raise DataError(f"{path}: unreadable dataset.json ({e})") from e


def apply_dataset_info(samples: list, info: DatasetInfo | None) -> None:
    """Put the file's class names and flip pairs on the labeled samples and its channel count on all."""
    if info is None:
        return
    for s in samples:
        if info.class_names and (s.mask is not None or s.extra.get("mask_composer")):
            s.extra["class_names"] = list(info.class_names)
        if info.flip_pairs:
            s.extra["flip_pairs"] = list(info.flip_pairs)
        if info.channels:
            s.extra["channels"] = info.channels


def dataset_json_text(info: DatasetInfo) -> str:
    """The file :func:`read_dataset_json` reads back as ``info``."""
    record: dict[str, Any] = {"labels": {str(i): n for i, n in enumerate(info.class_names)}}
    if info.flip_pairs:
        record["flip_pairs"] = [list(p) for p in info.flip_pairs]
    if info.channels:
        record["channels"] = info.channels
    return json.dumps(record, indent=1) + "\n"


__all__ = ["DatasetInfo", "read_dataset_json", "apply_dataset_info", "dataset_json_text"]
