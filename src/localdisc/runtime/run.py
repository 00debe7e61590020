"""One folder per run: resolved config, metrics.csv, checkpoints, final weights, pictures.

Layout::

    RUN/config.yaml        resolved config (what was actually used)
    RUN/metrics.csv        one row per logged step, appended (rewritten only when a new column appears)
    RUN/train.log          what the run printed, with time stamps (see progress.py)
    RUN/ckpt-XXXXXXXX/     rolling checkpoints (see checkpoint.py), latest.json points at one
    RUN/model.safetensors  final weights (with RUN/model.json describing the network)
    RUN/pictures/          figures refreshed during training
"""

from __future__ import annotations

import csv
import fcntl
import io
import json
import math
import os
import shutil
from pathlib import Path
from typing import Any, Iterable

import yaml

from ..config import to_dict
from ..errors import ConfigError, TrainingError, shorten
from .checkpoint import atomic_write_text
from .outputs import MARKER, check_target, claim, foreign_entries, is_marked, is_owned_name, marker_kind, name_list, remove_stale_temporaries

_HELD: dict[str, int] = {}  # run folder -> lock file descriptor held by this process


def _lock(path: Path) -> int:
    """Exclusive lock on ``path/.lock`` for this process (released when it exits); a folder that
    another process holds is a clear error naming that process."""

    key = str(path.resolve())
    if key in _HELD:  # this process already holds it (an earlier Run object of the same folder)
        return _HELD[key]
    fd = os.open(path / ".lock", os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "?"
        os.close(fd)
        raise ConfigError(f"{path}: another localdisc process (pid {holder}) is using this run folder; wait for it or choose another --out") from None
    os.ftruncate(fd, 0)
    os.pwrite(fd, str(os.getpid()).encode(), 0)
    _HELD[key] = fd
    return fd


class Run:
    """A run folder. Creating the object only checks and locks: nothing of an existing run is
    touched until :meth:`begin`, which the training loops call once data, options and --init
    have been validated. With --overwrite, ``begin`` moves the old run's files aside into
    ``.replaced/`` and :meth:`finish` deletes them once the new run has ended; a failed start
    leaves the old run as it was (and no new folder)."""

    def __init__(self, path: str | Path, resume: bool = False, overwrite: bool = False, is_writer: bool = True,
                 inputs: Iterable[str | Path] = (), options: dict[str, Any] | None = None, may_differ: Iterable[str] = ()):
        """``inputs``: data folders/files and input runs the folder may not overlap. ``options``:
        the run's options as given; on --resume they must equal the saved ones, except the
        names in ``may_differ`` (and settings that do not change results, :data:`RESUME_FREE`)."""
        self.path = Path(path)
        self.is_writer = is_writer
        check_target(self.path, inputs, nested_runs=True)
        exists = (self.path / "config.yaml").exists()
        if self.path.is_dir() and is_marked(self.path) and marker_kind(self.path) not in ("", "run", "benchmark-cell"):
            raise ConfigError(f"{self.path}: holds localdisc {marker_kind(self.path)} outputs, not a run; choose another folder for --out")
        if self.path.is_dir() and not is_marked(self.path):
            legacy = resume and exists and _looks_like_run(self.path)  # a run made before runs carried a marker
            foreign = foreign_entries(self.path)
            if foreign and not legacy:
                hint = " (--overwrite replaces only runs localdisc created)" if overwrite else ""
                raise ConfigError(f"{self.path}: the folder holds files localdisc did not write ({name_list(foreign)}); choose a new or empty folder for --out{hint}")
        if exists and not (resume or overwrite):
            raise ConfigError(f"{self.path}: a run already exists here; pass --resume to continue it or --overwrite to replace it")
        if resume and exists and options is not None:
            check_resume_options(self.path, options, may_differ)
        self._resuming = resume and exists
        self._replace = exists and overwrite and not resume
        self._created = not self.path.exists()
        # the highest folder this run creates (LD's OUT/stage1 also creates OUT): a failed start removes it
        self._created_root = next((p for p in reversed([self.path, *self.path.parents]) if not p.exists()), self.path)
        self._begun = False
        self._lock_was_there = (self.path / ".lock").exists()
        if is_writer:
            self.path.mkdir(parents=True, exist_ok=True)
            _lock(self.path)
            if not self._created:
                remove_stale_temporaries(self.path)
        self._rows: list[dict[str, Any]] = []
        self._columns: list[str] = []  # the header metrics.csv has on disk now ([] = rewrite it)
        self._tensorboard = None
        metrics = self.path / "metrics.csv"
        if resume and metrics.is_file():
            text = metrics.read_text()
            if not text.endswith("\n"):  # a row cut short by a kill: dropped
                text = text[: text.rfind("\n") + 1]
            self._rows = [r for r in csv.DictReader(io.StringIO(text)) if _is_step(r.get("step")) and None not in r.values()]

    def begin(self) -> None:
        """The run really starts: move a replaced run aside, create the folder's contents."""
        if self.is_writer and not self._begun:
            if self._replace:
                self._move_aside()
            claim(self.path, "run")
            (self.path / "pictures").mkdir(exist_ok=True)
        self._begun = True

    def abandon(self) -> None:
        """A start that failed validation: remove the folder if this run created it, release it."""
        if self.is_writer and not self._begun and self._created:
            shutil.rmtree(self._created_root, ignore_errors=True)
        self._release()
        if self.is_writer and not self._begun and not self._created and not self._lock_was_there:
            (self.path / ".lock").unlink(missing_ok=True)  # a failed start in an existing folder leaves it as it was

    def finish(self) -> None:
        """The run ended: delete the replaced run's files, release the folder."""
        if self.is_writer:
            shutil.rmtree(self.path / ".replaced", ignore_errors=True)
        self._release()

    def _release(self) -> None:
        if self._tensorboard is not None:
            self._tensorboard.close()
            self._tensorboard = None
        fd = _HELD.pop(str(self.path.resolve()), None) if self.is_writer else None
        if fd is not None:
            os.close(fd)  # closing the descriptor drops the lock

    def _move_aside(self) -> None:
        """--overwrite: the old run's files go to .replaced/ (deleted by finish) so no stale
        checkpoint, metric or picture survives. Only names localdisc writes move (a user's file
        in the run folder stays); nested runs (marked sub-folders, e.g. LD's stage1/) stay."""

        aside = self.path / ".replaced"
        shutil.rmtree(aside, ignore_errors=True)
        aside.mkdir()
        for p in self.path.iterdir():
            if p.name in (".replaced", ".lock", MARKER) or not is_owned_name(p.name) or (p.is_dir() and is_marked(p)):
                continue
            os.replace(p, aside / p.name)

    def save_config(self, cfg: Any, typed: dict[str, Any] | None = None, **sections: Any) -> None:
        """RUN/config.yaml: at the top level the options as given (``typed``; default ``cfg``), so
        ``--config RUN/config.yaml`` reproduces the run; under ``effective`` what this folder's
        training actually used (automatic values filled in, a schedule's stage settings), which
        is what :func:`read_run_config` returns to the commands that load the run."""
        self.begin()
        if self.is_writer and not self._resuming:  # a resumed run keeps the config it was made with
            effective = {**to_dict(cfg), **{k: to_dict(v) if hasattr(v, "__dataclass_fields__") else v for k, v in sections.items()}}
            top = typed if typed is not None else effective
            atomic_write_text(self.path / "config.yaml", yaml.safe_dump({**top, "effective": effective}, sort_keys=False))

    def log(self, step: int, **values: float) -> None:
        """Append a metrics row; NaN/Inf in any loss-like value stops training with a clear error."""
        for k, v in values.items():
            if isinstance(v, float) and not math.isfinite(v) and "loss" in k:
                raise TrainingError(f"{k} became {v} at step {step} (run {self.path}); lower the learning rate or check the input data. The last checkpoint is kept.")
        if not self.is_writer:
            return
        if self._rows and int(float(self._rows[-1]["step"])) >= step:
            # rows from a killed run's future: forget them so a resumed run does not duplicate steps
            self.truncate_metrics(step - 1)
        row = {"step": step, **{k: (f"{v:.6g}" if isinstance(v, float) else v) for k, v in values.items()}}
        self._rows.append(row)
        if self._tensorboard is not None:
            for k, v in values.items():
                if isinstance(v, (int, float)):
                    self._tensorboard.add_scalar(k, v, step)
            self._tensorboard.flush()
        path = self.path / "metrics.csv"
        if self._columns and set(row) <= set(self._columns) and path.is_file():
            with path.open("a", newline="") as f:  # one line per logged step, not the whole file
                csv.DictWriter(f, fieldnames=self._columns).writerow(row)
            return
        keys: list[str] = []
        for r in self._rows:
            keys += [k for k in r if k not in keys]
        buf = io.StringIO()
        writer = csv.DictWriter(buf, fieldnames=keys)
        writer.writeheader()
        writer.writerows(self._rows)
        atomic_write_text(path, buf.getvalue())
        self._columns = keys

    def use_tensorboard(self) -> None:
        """Also write every logged value as a TensorBoard scalar into RUN/tensorboard/."""
        if not self.is_writer:
            return
        try:
            from torch.utils.tensorboard import SummaryWriter  # deferred: heavy optional dependency, loaded only when used
        except ImportError:
            raise ConfigError("--tensorboard needs the tensorboard package (pip install tensorboard)") from None
        self._tensorboard = SummaryWriter(str(self.path / "tensorboard"))

    def rows(self) -> list[dict[str, Any]]:
        """The metrics rows logged so far (a resumed run's earlier rows included)."""
        return list(self._rows)

    def truncate_metrics(self, step: int) -> None:
        """On resume from a checkpoint at ``step``, forget rows logged after it (metrics.csv is
        rewritten at the next row)."""
        kept = [r for r in self._rows if int(float(r["step"])) <= step]
        if len(kept) != len(self._rows):
            self._columns = []
        self._rows = kept

    def write_json(self, name: str, data: Any) -> Path:
        path = self.path / name
        if self.is_writer:
            atomic_write_text(path, json.dumps(data, indent=2, default=str))
        return path


# Options that may change on --resume: they do not change what the run computes.
RESUME_FREE = ("out", "resume", "overwrite", "device", "workers", "log_every", "checkpoint_every", "checkpoint_minutes", "picture_every",
               "tensorboard", "max_minutes", "dry_run", "guard")


def check_resume_options(path: Path, options: dict[str, Any], may_differ: Iterable[str] = ()) -> None:
    """--resume with other options than the run's: one line listing them (the run's config.yaml
    is the truth; it is never rewritten on resume)."""
    saved = {k: v for k, v in _read_yaml(path / "config.yaml").items() if k != "effective"}
    free = set(RESUME_FREE) | set(may_differ)

    def norm(v: Any) -> str:
        return json.dumps(v, default=str, sort_keys=True).replace("[]", "null") if v not in ((), [], None) else "null"

    def flat(d: dict[str, Any], prefix: str = "") -> dict[str, Any]:
        out = {}
        for k, v in d.items():
            if isinstance(v, dict):
                out.update(flat(v, f"{prefix}{k}."))
            else:
                out[f"{prefix}{k}"] = list(v) if isinstance(v, tuple) else v
        return out

    a, b = flat(saved), flat(to_dict(options) if hasattr(options, "__dataclass_fields__") else options)
    diff = [k for k in sorted(set(a) | set(b)) if k.split(".")[-1] not in free and k in a and k in b and norm(a[k]) != norm(b[k])]
    if diff:
        shown = ", ".join(f"{k} {_option_text(a.get(k))} -> {_option_text(b.get(k))}" for k in diff[:6]) + (f" and {len(diff) - 6} more" if len(diff) > 6 else "")
        raise ConfigError(f"{path}: --resume with options that differ from the run's ({shown}); resume with the run's options "
                          f"(--config {path / 'config.yaml'} --resume) or start a new run with another --out")


def _option_text(v: Any) -> str:
    return shorten(" ".join(map(str, v)) if isinstance(v, (list, tuple)) else v, 40)


def _looks_like_run(path: Path) -> bool:
    return (path / "metrics.csv").is_file() and any((path / n).exists() for n in ("latest.json", "model.safetensors", "backbone.json"))


def _read_yaml(path: Path) -> dict[str, Any]:
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except (yaml.YAMLError, UnicodeDecodeError, OSError) as e:
        raise ConfigError(f"{path}: not a readable run config ({str(e).splitlines()[0][:100]})") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping of option names to values, got {type(data).__name__}")
    return data


def _is_step(text: Any) -> bool:
    try:
        float(text)
        return True
    except (TypeError, ValueError):
        return False


def read_run_config(run_dir: str | Path) -> dict[str, Any]:
    """The settings a run folder's training used (its config's ``effective`` section)."""
    path = Path(run_dir) / "config.yaml"
    if not path.is_file():
        raise ConfigError(f"{run_dir}: not a localdisc run (no config.yaml)")
    data = _read_yaml(path)
    effective = data.get("effective")
    if effective is not None and not isinstance(effective, dict):
        raise ConfigError(f"{path}: 'effective' must be a mapping of option names to values")
    return effective or data


__all__ = ["Run", "read_run_config", "check_resume_options", "RESUME_FREE", "to_dict"]
