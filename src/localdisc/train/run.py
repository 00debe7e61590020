"""One folder per run: resolved config, metrics.csv, checkpoints, final weights, pictures.

Layout::

    RUN/config.yaml        resolved config (what was actually used)
    RUN/metrics.csv        one row per logged step (columns grow as new keys appear)
    RUN/ckpt-XXXXXXXX/     rolling checkpoints (see checkpoint.py), latest.json points at one
    RUN/model.safetensors  final weights (with RUN/model.json describing the network)
    RUN/pictures/          figures refreshed during training
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
from pathlib import Path
from typing import Any

from ..config import save_config, to_dict
from ..errors import ConfigError, TrainingError
from .checkpoint import atomic_write_text


_HELD: dict[str, int] = {}  # run folder -> lock file descriptor held by this process


def _lock(path: Path) -> int:
    """Exclusive lock on ``path/.lock`` for this process (released when it exits); a folder that
    another process holds is a clear error naming that process."""
    import fcntl

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

    def __init__(self, path: str | Path, resume: bool = False, overwrite: bool = False, is_writer: bool = True):
        self.path = Path(path)
        self.is_writer = is_writer
        exists = (self.path / "config.yaml").exists()
        if exists and not (resume or overwrite):
            raise ConfigError(f"{self.path}: a run already exists here; pass --resume to continue it or --overwrite to replace it")
        self._replace = exists and overwrite and not resume
        self._created = not self.path.exists()
        self._begun = False
        if is_writer:
            self.path.mkdir(parents=True, exist_ok=True)
            _lock(self.path)
        self._rows: list[dict[str, Any]] = []
        metrics = self.path / "metrics.csv"
        if resume and metrics.is_file():
            with metrics.open() as f:
                self._rows = list(csv.DictReader(f))

    def begin(self) -> None:
        """The run really starts: move a replaced run aside, create the folder's contents."""
        if self.is_writer and not self._begun:
            if self._replace:
                self._move_aside()
            (self.path / "pictures").mkdir(exist_ok=True)
        self._begun = True

    def abandon(self) -> None:
        """A start that failed validation: remove the folder if this run created it, release it."""
        if self.is_writer and not self._begun and self._created:
            import shutil

            shutil.rmtree(self.path, ignore_errors=True)
        self._release()

    def finish(self) -> None:
        """The run ended: delete the replaced run's files, release the folder."""
        if self.is_writer:
            import shutil

            shutil.rmtree(self.path / ".replaced", ignore_errors=True)
        self._release()

    def _release(self) -> None:
        fd = _HELD.pop(str(self.path.resolve()), None) if self.is_writer else None
        if fd is not None:
            os.close(fd)  # closing the descriptor drops the lock

    def _move_aside(self) -> None:
        """--overwrite: the old run's files go to .replaced/ (deleted by finish) so no stale
        checkpoint, metric or picture survives; nested runs (sub-folders with their own
        config.yaml, e.g. LD's stage1/) stay."""
        import shutil

        aside = self.path / ".replaced"
        shutil.rmtree(aside, ignore_errors=True)
        aside.mkdir()
        for p in self.path.iterdir():
            if p.name in (".replaced", ".lock") or (p.is_dir() and (p / "config.yaml").exists()):
                continue
            os.replace(p, aside / p.name)

    def save_config(self, cfg: Any, **extra: Any) -> None:
        self.begin()
        if self.is_writer:
            save_config(cfg, self.path / "config.yaml", **extra)

    def log(self, step: int, **values: float) -> None:
        """Append a metrics row; NaN/Inf in any loss-like value stops training with a clear error."""
        for k, v in values.items():
            if isinstance(v, float) and not math.isfinite(v) and "loss" in k:
                raise TrainingError(f"{k} became {v} at step {step} (run {self.path}); lower the learning rate or check the input data. The last checkpoint is kept.")
        if not self.is_writer:
            return
        # Drop rows from a killed run's future so a resumed run does not duplicate steps.
        self._rows = [r for r in self._rows if int(float(r["step"])) < step]
        self._rows.append({"step": step, **{k: (f"{v:.6g}" if isinstance(v, float) else v) for k, v in values.items()}})
        keys: list[str] = []
        for r in self._rows:
            keys += [k for k in r if k not in keys]
        buf = io.StringIO()
        writer = csv.DictWriter(buf, fieldnames=keys)
        writer.writeheader()
        writer.writerows(self._rows)
        atomic_write_text(self.path / "metrics.csv", buf.getvalue())

    def rows(self) -> list[dict[str, Any]]:
        """The metrics rows logged so far (a resumed run's earlier rows included)."""
        return list(self._rows)

    def truncate_metrics(self, step: int) -> None:
        """On resume from a checkpoint at ``step``, forget rows logged after it."""
        self._rows = [r for r in self._rows if int(float(r["step"])) <= step]

    def write_json(self, name: str, data: Any) -> Path:
        path = self.path / name
        if self.is_writer:
            atomic_write_text(path, json.dumps(data, indent=2, default=str))
        return path


def read_run_config(run_dir: str | Path) -> dict[str, Any]:
    import yaml

    path = Path(run_dir) / "config.yaml"
    if not path.is_file():
        raise ConfigError(f"{run_dir}: not a localdisc run (no config.yaml)")
    return yaml.safe_load(path.read_text()) or {}


__all__ = ["Run", "read_run_config", "to_dict"]
