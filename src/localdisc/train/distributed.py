"""Process-group setup for ``torchrun`` (DDP) and mixed-precision contexts.

Single-process runs go through the same functions (world=1) so the loops have no branches
of their own. Under ``torchrun`` the env vars RANK/WORLD_SIZE/LOCAL_RANK select the backend
(nccl on GPUs, gloo on CPU).
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass
from typing import Callable

import torch
import torch.distributed as tdist

from ..utils import pick_device


@dataclass
class DistEnv:
    rank: int = 0
    world: int = 1
    local_rank: int = 0
    device: torch.device = torch.device("cpu")

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world > 1


def init(device: str = "auto") -> DistEnv:
    world = int(os.environ.get("WORLD_SIZE", 1))
    rank = int(os.environ.get("RANK", 0))
    local = int(os.environ.get("LOCAL_RANK", 0))
    dev = pick_device(device)
    if world > 1 and not tdist.is_initialized():
        backend = "nccl" if dev.type == "cuda" else "gloo"
        if dev.type == "cuda":
            torch.cuda.set_device(local)
        tdist.init_process_group(backend=backend)
    return DistEnv(rank=rank, world=world, local_rank=local, device=dev)


def wrap(model: torch.nn.Module, env: DistEnv) -> torch.nn.Module:
    if not env.distributed:
        return model
    from torch.nn.parallel import DistributedDataParallel

    if any(isinstance(m, torch.nn.modules.batchnorm._BatchNorm) for m in model.modules()):
        model = torch.nn.SyncBatchNorm.convert_sync_batchnorm(model) if env.device.type == "cuda" else model
    return DistributedDataParallel(model, device_ids=[env.local_rank] if env.device.type == "cuda" else None, find_unused_parameters=True)


class _AllGather(torch.autograd.Function):
    """all_gather whose backward returns this rank's slice of the summed gradient."""

    @staticmethod
    def forward(ctx, x: torch.Tensor) -> torch.Tensor:
        out = [torch.empty_like(x) for _ in range(tdist.get_world_size())]
        tdist.all_gather(out, x.contiguous())
        ctx.rank, ctx.n = tdist.get_rank(), x.shape[0]
        return torch.cat(out)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        grad = grad.contiguous()
        tdist.all_reduce(grad)
        return grad[ctx.rank * ctx.n : (ctx.rank + 1) * ctx.n]


def all_gather(x: torch.Tensor) -> torch.Tensor:
    """Differentiable concatenation of every rank's ``x`` along dim 0 (identity when world=1)."""
    if not (tdist.is_available() and tdist.is_initialized()) or tdist.get_world_size() == 1:
        return x
    return _AllGather.apply(x)


def gather_fn(env: DistEnv) -> Callable[[torch.Tensor], torch.Tensor] | None:
    return all_gather if env.distributed else None


def autocast_context(precision: str, device: torch.device) -> Callable[[], contextlib.AbstractContextManager]:
    if precision in ("32", "fp32", "32-true"):
        return contextlib.nullcontext
    if precision == "bf16":
        return lambda: torch.autocast(device_type=device.type, dtype=torch.bfloat16)
    if precision == "16-mixed":
        return lambda: torch.autocast(device_type=device.type, dtype=torch.float16)
    raise ValueError(f"unknown precision {precision!r}; valid: 32, bf16, 16-mixed")


def barrier(env: DistEnv) -> None:
    if env.distributed:
        tdist.barrier()
