"""Process-group setup for ``torchrun`` (DDP), the differentiable all-gather, and mixed precision.

Single-process runs go through the same functions (world=1, every helper is the identity) so
the loops have no branches of their own. Under ``torchrun`` the env vars RANK/WORLD_SIZE/
LOCAL_RANK select the process; the backend is nccl on GPUs and gloo on CPU.

Gradient convention (what a method must do so that W processes give the gradients of one
process over the concatenated global batch):

* The loop gives each rank its slice of the step's global batch (``StepBatchSampler``): rank r
  holds global samples ``[r*b, (r+1)*b)``, b = B/W.
* DDP *averages* parameter gradients over ranks: g = (1/W) sum_r grad(L_r).
* :func:`all_gather` is differentiable: its backward *sums* the gradient arriving at the
  gathered tensor over all ranks and hands each rank the slice of its own rows.
* Hence the single-process gradient is reproduced exactly when ``(1/W) sum_r L_r == L``,
  where L is the one-process loss over the global batch. Two cases cover every loss here:

  1. a mean over anchors, L = (1/M) sum_i l_i: rank r returns the **mean over its own
     anchors** (anchors = its local rows, keys/negatives/prototypes = gathered rows),
     i.e. ``sum_{i in r} l_i / (M/W)``, which equals "normalized by the global count M,
     times W to undo DDP's averaging". Do NOT sum-reduce the loss across ranks yourself.
  2. a function of global statistics (prototypes, cluster areas, balance prior computed from
     gathered tensors): every rank computes the same value L_r = L; nothing else to do.

  Positives must be indexed in the gathered layout: local row i is global row
  ``rank_offset(b) + i`` (see :func:`global_index`). Keys that are detached in the math
  (e.g. LD's patch keys) can be gathered from ``x.detach()``; no gradient is exchanged.
  Every rank must call ``all_gather`` the same number of times with the same shapes.

BatchNorm: per-rank batch statistics make W processes differ from one process. Use
``--norm group|instance`` where exact equivalence matters; on CUDA :func:`wrap` converts BN to
SyncBatchNorm (global statistics). gloo/CPU has no SyncBatchNorm, so CPU DDP keeps per-rank BN.

Precision: ``autocast_context`` runs the forward in bf16/fp16; methods cast loss inputs with
``.float()`` so the loss math stays float32. ``grad_scaler`` scales fp16 gradients on CUDA.
"""

from __future__ import annotations

import atexit
import contextlib
import datetime
import gc
import os
import time
import warnings
from dataclasses import dataclass, field
from typing import Any, Callable

import torch
import torch.distributed as tdist
from torch.nn.parallel import DistributedDataParallel

from ..errors import ConfigError
from ..utils import pick_device

PRECISIONS = ("32", "bf16", "16-mixed")
_ALIASES = {"32": "32", "fp32": "32", "32-true": "32", "float32": "32", "bf16": "bf16", "bf16-mixed": "bf16", "16": "16-mixed", "16-mixed": "16-mixed", "fp16": "16-mixed"}


@dataclass
class DistEnv:
    rank: int = 0
    world: int = 1
    local_rank: int = 0
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world > 1


def init(device: str = "auto", timeout_s: float = 1800.0) -> DistEnv:
    """Join the process group named by the torchrun env vars (no-op for a single process).

    ``device`` "auto" picks ``cuda:LOCAL_RANK`` when CUDA exists, else the CPU.
    """
    world = int(os.environ.get("WORLD_SIZE", 1))
    rank = int(os.environ.get("RANK", 0))
    local = int(os.environ.get("LOCAL_RANK", rank))
    dev = pick_device(device)
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise ConfigError(f"--device {device}: CUDA is not available on this machine; use --device cpu or auto")
        if dev.index is None or (world > 1 and device != "auto"):
            dev = torch.device("cuda", local % max(1, torch.cuda.device_count()))
        torch.cuda.set_device(dev)
    if world > 1 and not tdist.is_initialized():
        backend = "nccl" if dev.type == "cuda" else "gloo"
        tdist.init_process_group(backend=backend, timeout=datetime.timedelta(seconds=timeout_s))
        # A group still open when the interpreter finalizes can abort the process ("terminate
        # called without an active exception", gloo worker threads); CLI runs end without cleanup().
        atexit.register(_destroy)
    return DistEnv(rank=rank, world=world, local_rank=local, device=dev)


def cleanup() -> None:
    """Leave the process group once every rank got here (no peer is torn down mid-collective)."""
    if tdist.is_available() and tdist.is_initialized():
        gc.collect()  # DDP reducers in reference cycles hold the group; free them while peers are alive
        if tdist.get_world_size() > 1:
            tdist.barrier()
        _destroy()


def _destroy() -> None:
    """At exit: no barrier, because a rank may be exiting on an error while its peers wait."""
    if tdist.is_available() and tdist.is_initialized():
        tdist.destroy_process_group()


def wrap(model: torch.nn.Module, env: DistEnv, find_unused_parameters: bool = True) -> torch.nn.Module:
    """DDP-wrap ``model`` when distributed (SyncBatchNorm on CUDA); identity otherwise.

    ``find_unused_parameters`` stays on because methods switch heads/losses by stage.
    """
    if not env.distributed:
        return model

    has_bn = any(isinstance(m, torch.nn.modules.batchnorm._BatchNorm) for m in model.modules())
    if has_bn and env.device.type == "cuda":
        model = torch.nn.SyncBatchNorm.convert_sync_batchnorm(model)
    elif has_bn and env.is_main:
        warnings.warn("BatchNorm under CPU/gloo DDP uses per-process batch statistics (no SyncBatchNorm); results differ from one process, "
                      "a lot for contrastive losses with few images per process: use --norm group for exact equivalence", stacklevel=2)
    ids = [env.device.index] if env.device.type == "cuda" else None
    return DistributedDataParallel(model, device_ids=ids, find_unused_parameters=find_unused_parameters)


def _active() -> bool:
    return tdist.is_available() and tdist.is_initialized() and tdist.get_world_size() > 1


def rank() -> int:
    return tdist.get_rank() if _active() else 0


def world_size() -> int:
    return tdist.get_world_size() if _active() else 1


class _AllGather(torch.autograd.Function):
    """all_gather whose backward sums the incoming gradient over ranks and returns this rank's rows."""

    @staticmethod
    def forward(ctx, x: torch.Tensor) -> torch.Tensor:
        out = [torch.empty_like(x) for _ in range(tdist.get_world_size())]
        tdist.all_gather(out, x.contiguous())
        ctx.rank, ctx.n = tdist.get_rank(), x.shape[0]
        return torch.cat(out)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        grad = grad.contiguous().clone()  # all_reduce is in place; autograd may reuse `grad`
        tdist.all_reduce(grad, op=tdist.ReduceOp.SUM)
        return grad[ctx.rank * ctx.n : (ctx.rank + 1) * ctx.n]


def all_gather(x: torch.Tensor) -> torch.Tensor:
    """Differentiable concatenation of every rank's ``x`` along dim 0 (identity when world=1).

    x: (b, ...) with the same shape on every rank -> (W*b, ...), rank r's rows at [r*b, (r+1)*b).
    Gradient w.r.t. x = sum over ranks of the gradient w.r.t. the output rows of x (see the
    module docstring for the loss convention that makes this match one process).
    """
    if not _active():
        return x
    if not x.requires_grad:
        out = [torch.empty_like(x) for _ in range(tdist.get_world_size())]
        tdist.all_gather(out, x.contiguous())
        return torch.cat(out)
    return _AllGather.apply(x)


def rank_offset(n_local: int) -> int:
    """Global row index of this rank's first local row in :func:`all_gather`'s output."""
    return rank() * n_local


def global_index(n_local: int, device: torch.device | str | None = None) -> torch.Tensor:
    """(n_local,) int64: global rows of this rank's local rows, for indexing positives."""
    start = rank_offset(n_local)
    return torch.arange(start, start + n_local, device=device)


def gather_fn(env: DistEnv) -> Callable[[torch.Tensor], torch.Tensor] | None:
    return all_gather if env.distributed else None


def reduce_mean(value: torch.Tensor | float) -> float:
    """Mean of a scalar over ranks (for logging only; not differentiable)."""
    t = torch.as_tensor(value, dtype=torch.float64).detach().cpu().reshape(())
    if _active():
        backend = tdist.get_backend()
        dev = torch.device("cuda", torch.cuda.current_device()) if backend == "nccl" else torch.device("cpu")
        t = t.to(dev)
        tdist.all_reduce(t, op=tdist.ReduceOp.SUM)
        t = t.cpu() / tdist.get_world_size()
    return float(t)


def broadcast_state(module: torch.nn.Module) -> None:
    """Copy rank 0's parameters and buffers into every rank's ``module`` (no-op in one process)."""
    if not _active():
        return
    for t in module.state_dict().values():
        tdist.broadcast(t, src=0)


def minutes_passed(minutes: float, since: float) -> bool:
    """``minutes`` (> 0) have passed since ``since``; rank 0's clock decides for every process
    (a collective under DDP, so that all ranks checkpoint at the same step)."""

    return bool(minutes) and bool(gather_objects(time.time() - since >= minutes * 60)[0])


def gather_objects(obj: Any) -> list[Any]:
    """Every rank's picklable ``obj`` (in rank order); ``[obj]`` for one process."""
    if not _active():
        return [obj]
    out: list[Any] = [None] * tdist.get_world_size()
    tdist.all_gather_object(out, obj)
    return out


def normalize_precision(precision: str) -> str:
    name = _ALIASES.get(str(precision).lower())
    if name is None:
        raise ConfigError(f"unknown precision {precision!r}; valid: {', '.join(PRECISIONS)}")
    return name


def autocast_context(precision: str, device: torch.device) -> Callable[[], contextlib.AbstractContextManager]:
    """Factory of autocast contexts for the forward pass (``with autocast(): ...``)."""
    name = normalize_precision(precision)
    device = torch.device(device)
    if name == "32":
        return contextlib.nullcontext
    dtype = torch.bfloat16 if name == "bf16" else torch.float16
    return lambda: torch.autocast(device_type=device.type, dtype=dtype)


def grad_scaler(precision: str, device: torch.device) -> torch.amp.GradScaler:
    """Loss scaler, enabled only for 16-mixed on CUDA (bf16 and CPU need none)."""
    device = torch.device(device)
    enabled = normalize_precision(precision) == "16-mixed" and device.type == "cuda"
    return torch.amp.GradScaler(device.type if enabled else "cpu", enabled=enabled)


def barrier(env: DistEnv) -> None:
    if env.distributed:
        tdist.barrier()


__all__ = [
    "DistEnv", "init", "cleanup", "wrap", "all_gather", "rank", "world_size", "rank_offset", "global_index",
    "gather_fn", "reduce_mean", "gather_objects", "normalize_precision", "autocast_context", "grad_scaler", "barrier", "PRECISIONS",
]
