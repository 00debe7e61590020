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


def _parse(record: Any) -> DatasetInfo:
    if not isinstance(record, dict):
        raise ValueError("not a JSON object")
    labels = record.get("labels", {})
    if not isinstance(labels, dict):
        raise ValueError("'labels' is not an object of value -> name")
    values = sorted(int(k) for k in labels)
    if values != list(range(len(values))):  # a gap would shift every later class's name
        raise ValueError(f"label values {values} are not 0..{len(values) - 1}")
    names = [str(labels[k]) for k in sorted(labels, key=int)]
    pairs = record.get("flip_pairs", [])
    if not isinstance(pairs, list) or not all(isinstance(p, list) and len(p) == 2 and all(type(c) is int and c > 0 for c in p) for p in pairs):
        raise ValueError(f"'flip_pairs' must be a list of [class, class] pairs of foreground classes, got {pairs!r}")
    if names and any(c >= len(names) for p in pairs for c in p):
        raise ValueError(f"'flip_pairs' {pairs} names a class beyond the labels 0..{len(names) - 1}")
    channels = record.get("channels", 0)
    if type(channels) is not int or channels not in (0, 1, 3):
        raise ValueError(f"'channels' must be 1 or 3, got {channels!r}")
    return DatasetInfo(names, [(a, b) for a, b in pairs], channels)


def read_dataset_json(path: Path, strict: bool = True) -> DatasetInfo | None:
    """The file's :class:`DatasetInfo`; None when there is no file. A file localdisc cannot read
    is an error naming it with ``strict`` (an MSD folder's own file), else ignored (a manifest's
    folder may hold another tool's dataset.json)."""
    if not path.is_file():
        return None
    try:
        return _parse(json.loads(path.read_text(encoding="utf-8")))
    except (ValueError, TypeError, UnicodeDecodeError) as e:
        if strict:
            raise DataError(f"{path}: unreadable dataset.json ({e})") from e
        return None


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
