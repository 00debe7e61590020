"""What localdisc may write, and where: the guard every output goes through.

Promises (README "What localdisc promises about your files"):

- A folder localdisc creates carries a marker file, :data:`MARKER`, written at creation. Only a
  marked folder is ever treated as localdisc's own; inside it only the entries localdisc writes
  (:data:`OWNED`, matched by name) are ever moved aside or replaced. A user's file dropped into a
  run folder stays.
- An existing folder that holds anything localdisc did not write (no marker) is never written
  into: not with ``--overwrite``, not with ``--resume``.
- An output never equals, contains or lies inside the input data or an input run, and an output
  file is never one of a run folder's own files (``export --out RUN/best.safetensors``).
- An existing output file is replaced only with an explicit ``--overwrite``.

Everything here only reads the file system, except :func:`claim` (writes the marker) and
:func:`atomic_write_bytes` (writes one file under a temporary name, then renames it).
"""

from __future__ import annotations

import csv
import fnmatch
import io
import json
import os
import shutil
import tempfile
import time
from pathlib import Path
from typing import Iterable

from .. import __version__
from ..errors import ConfigError

MARKER = ".localdisc"
# Names localdisc writes at the top of its folders (runs, evaluation and prediction outputs,
# embeddings, discovery, landmarks, MONAI bundles). Anything else in a marked folder is the user's.
OWNED = (MARKER, ".lock", ".replaced", ".*.tmp", "config.yaml", "metrics.csv", "train.log", "ckpt-*", "latest.json",
         "model.safetensors", "model.json", "MODEL.md", "best.safetensors", "backbone.safetensors", "backbone.json",
         "pictures", "tensorboard", "transfer.json", "splits.json", "guard.json", "probe.json", "method_state.json", "pseudo_classes*",
         "eval-*", "per_image.csv", "summary.json", "summary.md", "predictions", "probabilities", "overlays", "embeddings",
         "cluster_maps", "clusters*", "kmeans.json", "landmarks*", "configs", "models", "docs", "stage1", "predict*", "pretrain-*", "finetune-*", "benchmark_settings.json",
         "pretrain_done.json", "cases.json", "embed.json", "metrics.json", "provenance.json", "maps", "config.json",
         "predictions.csv", "predictions.json", "*_[0-9][0-9][0-9][0-9].png", "*_[0-9][0-9][0-9][0-9].nii.gz")


def is_owned_name(name: str) -> bool:
    return any(fnmatch.fnmatchcase(name, pattern) for pattern in OWNED)


def is_marked(folder: Path) -> bool:
    return (Path(folder) / MARKER).is_file()


def claim(folder: Path, kind: str) -> None:
    """Mark ``folder`` as localdisc's own (kept if already marked)."""

    marker = Path(folder) / MARKER
    if not marker.is_file():
        atomic_write_bytes(marker, json.dumps({"kind": kind, "localdisc": __version__, "created": time.strftime("%Y-%m-%d %H:%M:%S")}).encode())


def foreign_entries(folder: Path) -> list[str]:
    """Entries of an existing folder that localdisc did not write: everything in an unmarked
    folder, except marked sub-folders (e.g. LD's ``stage1/`` run made before its parent) and a
    lock file; in a marked folder, the names outside :data:`OWNED`."""
    folder = Path(folder)
    marked = is_marked(folder)
    found = []
    for entry in sorted(folder.iterdir()):
        if entry.name == ".lock" or (entry.is_dir() and not entry.is_symlink() and is_marked(entry)):
            continue
        if not marked or not is_owned_name(entry.name):
            found.append(entry.name)
    return found


def _overlap(a: Path, b: Path) -> bool:
    return a == b or a in b.parents or b in a.parents


def check_target(out: str | Path, inputs: Iterable[str | Path] = (), what: str = "--out", folder: bool = True, nested_runs: bool = False) -> Path:
    """Refuse an output path that is unusable or touches the inputs, before anything is written.

    ``folder``: the output is a folder (a file there is an error) or a single file (a folder there
    is an error). ``inputs``: data folders and files, input runs; the output may not equal, contain
    or lie inside any of them (``nested_runs``: except a localdisc run inside the output, LD's
    stage1/ that initializes stage 2). Returns the path."""
    path = Path(out)
    if str(out).strip() == "":
        raise ConfigError(f"{what} is empty")
    if path.is_symlink() and not path.exists():
        raise ConfigError(f"{what} {path}: a symbolic link to something that does not exist; choose another path")
    if path.exists():
        if folder and not path.is_dir():
            raise ConfigError(f"{what} {path}: exists and is a file, not a folder; choose a folder")
        if not folder and path.is_dir():
            raise ConfigError(f"{what} {path}: exists and is a folder; name a file")
        if not folder and not path.is_file():
            raise ConfigError(f"{what} {path}: exists and is not a regular file; choose another path")
    resolved = path.resolve()
    for inp in inputs:
        if inp is None or str(inp) == "":
            continue
        src = Path(inp).resolve()
        if nested_runs and resolved in src.parents and is_marked(src):
            continue  # a run nested in this one (LD's stage1/ initializes stage 2): localdisc's own
        if _overlap(resolved, src):
            relation = "is" if resolved == src else "lies inside" if src in resolved.parents else "contains"
            raise ConfigError(f"{what} {path} {relation} the input {inp}; write outputs to a folder of their own")
    start = resolved if folder else resolved.parent
    ancestor = start if start.exists() else next((p for p in start.parents if p.exists()), Path("/"))
    if ancestor.is_file() or not ancestor.is_dir():
        raise ConfigError(f"{what} {path}: {ancestor} is a file, not a folder")
    if not os.access(ancestor, os.W_OK | os.X_OK):
        raise ConfigError(f"{what} {path}: {ancestor} is not writable")
    return path


RUN_KINDS = ("run", "benchmark-cell", "demo")  # folders whose contents are training runs: never another command's output


def marker_kind(folder: Path) -> str:
    try:
        return str(json.loads((Path(folder) / MARKER).read_text()).get("kind", ""))
    except (OSError, ValueError, AttributeError):
        return ""


def inside_run(path: Path) -> Path | None:
    """The localdisc run folder that holds ``path`` (or is it), if any."""
    resolved = Path(path).resolve()
    for folder in [resolved, *resolved.parents]:
        if is_marked(folder) and marker_kind(folder) in RUN_KINDS:
            return folder
    return None


def check_output_folder(out: str | Path, inputs: Iterable[str | Path] = (), overwrite: bool = False, what: str = "--out",
                        kind: str = "output") -> Path:
    """An output folder for results (evaluate, predict, embed, discover, landmarks, bundles):
    new or empty, or an earlier localdisc output of the same kind that ``overwrite`` allows to
    replace; never a training run's folder. Files the user put there are never touched."""
    path = check_target(out, inputs, what)
    if path.is_dir() and is_marked(path) and marker_kind(path) not in ("", kind):
        raise ConfigError(f"{what} {path}: holds a localdisc {marker_kind(path)}, not {kind} outputs; choose a folder of its own")
    if path.is_dir():
        foreign = [] if is_marked(path) else foreign_entries(path)  # in localdisc's own folder, a user's file is only kept
        if foreign:
            raise ConfigError(f"{what} {path}: the folder holds files localdisc did not write ({name_list(foreign)}); choose a new or empty folder")
        earlier = [e.name for e in path.iterdir() if e.name not in (MARKER, ".lock") and is_owned_name(e.name)]
        if earlier and not overwrite:
            raise ConfigError(f"{what} {path}: holds earlier localdisc outputs ({name_list(earlier)}); pass --overwrite to replace them or choose another folder")
    return path


def clear_owned(folder: Path) -> None:
    """Remove localdisc's earlier outputs from a marked folder (never the user's files)."""

    folder = Path(folder)
    if not is_marked(folder):
        return
    for entry in folder.iterdir():
        if entry.name in (MARKER, ".lock") or not is_owned_name(entry.name) or entry.name.startswith(".staging-"):
            continue
        if entry.is_dir() and not entry.is_symlink() and is_marked(entry):
            continue  # another localdisc folder nested here (a run, an evaluation): its own owner
        if entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry)
        else:
            entry.unlink()


def check_output_file(out: str | Path, inputs: Iterable[str | Path] = (), overwrite: bool = False, protected: Iterable[str | Path] = (),
                      what: str = "--out") -> Path:
    """A single output file (an export): not a run's own file (``protected``: folders whose
    files may never be replaced), and an existing file only with ``overwrite``."""
    path = check_target(out, inputs, what, folder=False)
    resolved = path.resolve()
    holder = inside_run(resolved.parent)
    if holder is not None:
        raise ConfigError(f"{what} {path}: lies inside the localdisc run {holder}; write the export outside run folders")
    for folder in protected:
        root = Path(folder).resolve()
        if root in resolved.parents and (resolved.exists() or is_owned_name(resolved.relative_to(root).parts[0])):
            raise ConfigError(f"{what} {path}: would replace a file of the run {folder}; write the export elsewhere")
    if path.exists() and not overwrite:
        raise ConfigError(f"{what} {path}: the file exists; pass --overwrite to replace it or choose another name")
    return path


class StagedOutput:
    """An output folder filled only when the command succeeds: results are written into a hidden
    staging folder inside it; :meth:`commit` replaces localdisc's earlier outputs there with them,
    :meth:`abandon` (a failure) removes the staging folder, and the output folder too when this
    command created it. A failed command leaves earlier results as they were."""

    def __init__(self, out: str | Path, inputs: Iterable[str | Path] = (), overwrite: bool = False, kind: str = "output"):
        self.final = check_output_folder(out, inputs, overwrite, kind=kind)
        self.kind = kind
        resolved = self.final.resolve()
        self._created_root = next((p for p in reversed([resolved, *resolved.parents]) if not p.exists()), None)
        self.final.mkdir(parents=True, exist_ok=True)
        self.path = Path(tempfile.mkdtemp(dir=self.final, prefix=".staging-", suffix=".tmp"))

    def commit(self) -> Path:
        clear_owned(self.final)
        for entry in self.path.iterdir():
            os.replace(entry, self.final / entry.name)
        self.path.rmdir()
        claim(self.final, self.kind)
        return self.final

    def abandon(self) -> None:
        shutil.rmtree(self.path, ignore_errors=True)
        if self._created_root is not None:
            shutil.rmtree(self._created_root, ignore_errors=True)


def prepare_output_folder(out: str | Path, inputs: Iterable[str | Path] = (), overwrite: bool = False, kind: str = "output") -> Path:
    """Check an output folder (:func:`check_output_folder`), then create it, remove localdisc's
    earlier outputs from it (only with ``overwrite``, which the check requires) and mark it."""
    path = check_output_folder(out, inputs, overwrite, kind=kind)
    path.mkdir(parents=True, exist_ok=True)
    clear_owned(path)
    claim(path, kind)
    return path


def atomic_write_csv(path: Path, rows: Iterable[dict], float_format: str | None = None, empty_header: tuple[str, ...] = ()) -> None:
    """Rows (dicts; the header is every key in first-seen order) as a CSV file, written atomically;
    ``float_format`` (e.g. ``.6g``) formats float values; ``empty_header``: the header when there are no rows."""

    rows = list(rows)
    keys: list[str] = []
    for r in rows:
        keys += [k for k in r if k not in keys]
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=keys or list(empty_header))
    writer.writeheader()
    writer.writerows([{k: format(v, float_format) if float_format and isinstance(v, float) else v for k, v in r.items()} for r in rows])
    atomic_write_bytes(Path(path), buf.getvalue().encode())


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write under a temporary name, then rename: a kill leaves the old file or the new one.
    The file gets the permissions of any file created now (the umask), not mkstemp's 0600."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, default_file_mode())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def default_file_mode() -> int:
    """0o666 minus the process umask (what ``open(..., 'w')`` would give)."""
    return 0o666 & ~_umask()


def default_dir_mode() -> int:
    """0o777 minus the process umask (what ``mkdir`` would give)."""
    return 0o777 & ~_umask()


def remove_stale_temporaries(folder: Path) -> list[str]:
    """Temporary ``.NAME.*.tmp`` files and folders left by a kill or a full disk, removed at the next start."""

    removed = []
    folder = Path(folder)
    if not folder.is_dir():
        return removed
    for entry in [*folder.glob(".*.tmp"), *folder.glob(".ckpt-*.old")]:
        if entry.is_dir() and not entry.is_symlink():
            shutil.rmtree(entry, ignore_errors=True)
        else:
            entry.unlink(missing_ok=True)
        removed.append(entry.name)
    return removed


def name_list(names: list[str], shown: int = 4) -> str:
    """A few names for an error message: never a whole listing."""
    text = ", ".join(n[:60] for n in names[:shown])
    return text + (f" and {len(names) - shown} more" if len(names) > shown else "")


__all__ = ["MARKER", "OWNED", "is_owned_name", "is_marked", "claim", "foreign_entries", "check_target", "check_output_folder",
           "clear_owned", "prepare_output_folder", "StagedOutput", "inside_run", "marker_kind", "check_output_file", "data_inputs", "check_not_inputs", "atomic_write_bytes", "atomic_write_csv", "name_list", "default_file_mode", "default_dir_mode", "remove_stale_temporaries"]


def data_inputs(spec: str | None) -> list[Path]:
    """The existing paths a data spec names (``FOLDER``, ``manifest.csv``, ``LAYOUT:/path``);
    built-in specs (``synthetic-fundus:8``) name none."""
    if not spec:
        return []
    spec = str(spec)
    head, _, rest = spec.partition(":")
    candidates = [spec] + ([rest] if rest else [])
    return [Path(c) for c in candidates if c and Path(c).exists()]


def check_not_inputs(out: str | Path, files: Iterable[str | Path], what: str = "--out") -> None:
    """Refuse an output folder that contains any input file or lies inside an input file's folder
    tree root (``files``: the samples' images, masks and fields of view)."""
    root = Path(out).resolve()
    prefix = str(root) + os.sep
    for f in files:
        if not f:
            continue
        p = str(Path(f).resolve())
        if p == str(root) or p.startswith(prefix):
            raise ConfigError(f"{what} {out} contains the input file {f}; write outputs to a folder of their own")
