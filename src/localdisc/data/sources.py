"""Turn a data spec string into a list of :class:`Sample`.

Spec forms (``localdisc ... --data docs/method.md``):
- ``/path/to/folder``: images in the folder (unlabeled), or an image/mask folder pair when the
  folder holds ``images/`` and ``masks/`` (see :mod:`localdisc.data.folders`);
- ``/path/to/manifest.csv``: columns image, mask, fov, split, spacing (paths relative to the CSV);
- ``LAYOUT:/path``: a named public-dataset layout from :data:`LAYOUTS` (ph2, cxr, drive, ...);
- ``synthetic-fundus[:N]`` / ``synthetic-3d[:N]``: built-in generated data (cached on disk).
"""

from __future__ import annotations

from pathlib import Path

from ..errors import DataError
from . import folders, layouts, synthetic  # noqa: F401  (importing them registers their layouts)
from .records import Sample
from .registry import LAYOUTS


def resolve_source(spec: str, seed: int = 0, **opts) -> list[Sample]:
    spec = str(spec)
    head, _, rest = spec.partition(":")
    if head in LAYOUTS and (rest or head.startswith("synthetic")):
        return LAYOUTS[head](rest, seed=seed, **opts)
    path = Path(spec)
    if not path.exists():
        raise DataError(f"{spec}: no such file or folder (valid layout prefixes: {', '.join(sorted(LAYOUTS))})")
    if path.is_file() and path.suffix.lower() == ".csv":
        return folders.read_manifest(path)
    if path.is_dir():
        return folders.read_folder(path)
    return [Sample(id=path.stem, image=str(path))]


def pick_samples(spec: str, split: str = "all", max_images: int = 0) -> list[Sample]:
    """The samples of a data spec in ``split`` (plus unassigned ones), the first ``max_images`` (0 = all)."""
    samples = select_split(resolve_source(spec), split)
    return samples[:max_images] if max_images > 0 else samples


def select_split(samples: list[Sample], split: str) -> list[Sample]:
    """Samples of ``split`` plus unassigned ones; ``all`` keeps everything."""
    if split == "all":
        return list(samples)
    chosen = [s for s in samples if s.split in (split, None)]
    if not chosen:
        raise DataError(f"no samples in split {split!r} (splits present: {sorted({str(s.split) for s in samples})})")
    return chosen
