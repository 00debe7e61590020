"""Atomic, pickle-free checkpoints.

A checkpoint is a folder ``ckpt-{step:08d}/`` holding ``model.safetensors`` (weights),
``state.pt`` (optimizer/scheduler/RNG state: tensors, numbers, lists and dicts only, read
back with ``torch.load(weights_only=True)``) and ``meta.json``. It is written under a
temporary name and renamed into place, then ``latest.json`` is replaced atomically, so a
run killed at any instant leaves the previous checkpoint intact.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import torch
from safetensors.torch import load_file, save_file

from ..errors import ConfigError, TrainingError
from .outputs import atomic_write_bytes, default_dir_mode, default_file_mode


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write_bytes(Path(path), text.encode())


def save_weights(state_dict: dict[str, torch.Tensor], path: Path, metadata: dict[str, str] | None = None) -> None:
    """safetensors file written atomically; tensors are made contiguous CPU copies."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tensors = {k: v.detach().to("cpu").contiguous() for k, v in state_dict.items()}
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(fd)
    try:
        save_file(tensors, tmp, metadata=metadata)
        os.chmod(tmp, default_file_mode())  # like the rest of the run (umask), not mkstemp's 0600
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def load_weights(path: str | Path) -> dict[str, torch.Tensor]:
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: weights file not found")
    try:
        return load_file(str(path))
    except Exception as e:  # safetensors raises several types for corrupt files
        raise ConfigError(f"{path}: not a readable safetensors file ({e})") from e


def rng_state() -> dict[str, Any]:
    np_state = np.random.get_state()
    return {
        "torch": torch.get_rng_state(),
        "python": list(random.getstate()[1]),
        "python_pos": random.getstate()[2],
        "numpy_keys": torch.from_numpy(np_state[1].astype(np.int64)),
        "numpy_pos": int(np_state[2]),
    }


def set_rng_state(state: dict[str, Any]) -> None:
    torch.set_rng_state(state["torch"])
    random.setstate((3, tuple(int(x) for x in state["python"]), state["python_pos"]))
    keys = state["numpy_keys"].numpy().astype(np.uint32)
    np.random.set_state(("MT19937", keys, int(state["numpy_pos"]), 0, 0.0))


def save_checkpoint(
    run_dir: Path,
    step: int,
    model_state: dict[str, torch.Tensor],
    train_state: dict[str, Any],
    meta: dict[str, Any] | None = None,
    keep: int = 2,
) -> Path:
    """Write ``run_dir/ckpt-{step}`` atomically and point ``latest.json`` at it."""
    run_dir = Path(run_dir)
    final = run_dir / f"ckpt-{step:08d}"
    run_dir.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=run_dir, prefix=f".ckpt-{step:08d}.", suffix=".tmp"))  # unique: two writers never share it
    try:
        os.chmod(tmp, default_dir_mode())  # mkdtemp makes it 0700
        save_weights(model_state, tmp / "model.safetensors")
        torch.save(train_state, tmp / "state.pt")
        os.chmod(tmp / "state.pt", default_file_mode())
        atomic_write_text(tmp / "meta.json", json.dumps({"step": step, **(meta or {})}, indent=2))
    except (OSError, RuntimeError) as e:  # disk full: torch.save raises RuntimeError ("enforce fail"), the rest OSError
        shutil.rmtree(tmp, ignore_errors=True)
        kept = latest_checkpoint(run_dir)
        reason = e.strerror if isinstance(e, OSError) and e.strerror else str(e).strip().splitlines()[0][:120]
        raise TrainingError(f"{run_dir}: could not write the checkpoint of step {step} ({reason}); check free disk space. "
                            + (f"The previous checkpoint {kept.name} is intact: continue with --resume." if kept else
                               "No earlier checkpoint exists: start the run again.")) from None
    if final.exists():  # same step again (a resumed run): the old folder goes only once the new one is in place
        stale = Path(tempfile.mkdtemp(dir=run_dir, prefix=f".ckpt-{step:08d}.", suffix=".old"))
        os.replace(final, stale / final.name)
        os.replace(tmp, final)
        shutil.rmtree(stale, ignore_errors=True)
    else:
        os.replace(tmp, final)
    atomic_write_text(run_dir / "latest.json", json.dumps({"checkpoint": final.name, "step": step}))
    old = sorted(p for p in run_dir.glob("ckpt-*") if p.is_dir() and p != final)
    for p in old[: max(0, len(old) - (keep - 1))]:
        shutil.rmtree(p, ignore_errors=True)
    return final


def assert_finite_weights(model: torch.nn.Module, step: int, run_dir: Path) -> None:
    """Refuse to checkpoint NaN/Inf weights: the previous checkpoint stays the latest."""

    bad = [n for n, p in model.named_parameters() if not torch.isfinite(p).all()]
    if bad:
        raise TrainingError(f"weights became NaN/Inf at step {step} (run {run_dir}), e.g. {bad[:3]}; lower the learning rate. The last checkpoint is kept.")


def latest_checkpoint(run_dir: Path) -> Path | None:
    """The checkpoint to resume from: the one ``latest.json`` names when it is intact, else the
    newest intact ``ckpt-*`` folder (a pointer to a deleted or damaged folder must not silently
    restart at step 0 while older checkpoints exist); None when there is none."""
    run_dir = Path(run_dir)
    intact = lambda p: (p / "model.safetensors").is_file() and (p / "meta.json").is_file()  # noqa: E731
    pointer = run_dir / "latest.json"
    if pointer.is_file():
        try:
            named = run_dir / json.loads(pointer.read_text())["checkpoint"]
        except (ValueError, KeyError, TypeError):
            named = None
        if named is not None and named.parent == run_dir and intact(named):
            return named
    found = sorted(p for p in run_dir.glob("ckpt-*") if p.is_dir() and p.name[5:].isdigit() and intact(p))
    if found:
        print(f"{pointer}: missing or pointing at a missing checkpoint; using the newest intact one, {found[-1].name}")
    return found[-1] if found else None


def load_checkpoint(ckpt: Path) -> tuple[dict[str, torch.Tensor], dict[str, Any], dict[str, Any]]:
    """-> (model weights, train state, meta). Never unpickles arbitrary objects."""
    ckpt = Path(ckpt)
    weights = load_weights(ckpt / "model.safetensors")
    state_path = ckpt / "state.pt"
    try:
        state = torch.load(state_path, weights_only=True, map_location="cpu") if state_path.is_file() else {}
    except Exception:  # torch's own text would suggest weights_only=False, i.e. unpickling an untrusted file
        raise ConfigError(f"{state_path}: not a localdisc training state (corrupt, or it holds objects other than tensors "
                          f"and plain values, which localdisc never unpickles); remove this checkpoint folder to resume "
                          f"from an older one, or start again with --overwrite") from None
    meta = json.loads((ckpt / "meta.json").read_text()) if (ckpt / "meta.json").is_file() else {}
    return weights, state, meta


def resume_from_checkpoint(run, resume: bool, model: torch.nn.Module, optimizer, scheduler, world: int, rank: int, log) -> dict[str, Any] | None:
    """Restore the latest checkpoint of ``run`` (a :class:`~.run.Run`) into the model, optimizer,
    scheduler and this process's RNG, cut metrics.csv back to its step and tell ``log``. Returns
    the checkpoint's meta ({"step", "world", ...}) or None when training starts at step 0.
    Both training loops (pretraining, fine-tuning) resume through here."""
    ckpt = latest_checkpoint(run.path) if resume else None
    if ckpt is None:
        if resume:
            log.say(f"resuming {run.path}: no checkpoint found, starting at step 0")
        return None
    weights, state, meta = load_checkpoint(ckpt)
    model.load_state_dict(weights)
    optimizer.load_state_dict(state["optimizer"])
    scheduler.load_state_dict(state["scheduler"])
    # Per-rank RNG streams continue exactly on the same world size; on another world size
    # batches still match (they depend on seed + step) but augmentation draws differ.
    if world == meta.get("world", 1):
        set_rng_state((state.get("rng_ranks") or [state["rng"]] * world)[rank])
    start = int(meta["step"])
    run.truncate_metrics(start)
    log.say(f"resuming {run.path} from step {start} (saved with {meta.get('world', 1)} process(es), now {world})")
    log.start = start
    return meta
