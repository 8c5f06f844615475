"""Multi-process training with ``torchrun`` (DDP-style, written out for CoDT's four networks).

CoDT's step calls several sub-networks and two memory banks, so instead of wrapping the model in
``DistributedDataParallel`` this module does what DDP does, explicitly (METHOD §14 item 5):

- parameters and buffers are broadcast from rank 0 at start, so every rank starts identical;
- after ``backward`` the students' gradients are averaged over ranks (one flat all-reduce);
- memory-bank writes all-gather (ids, features) first, so every rank's banks stay identical;
- BatchNorm becomes ``SyncBatchNorm`` on CUDA (it has no CPU kernel; on CPU/gloo each rank keeps
  its own batch statistics and buffers are re-broadcast from rank 0 each epoch);
- only rank 0 logs, evaluates and writes checkpoints.

Launch: ``torchrun --nproc_per_node=2 -m training.run --task ...``. A single process runs with a
disabled :class:`DistContext` and every function here is then the identity.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from datetime import timedelta
from typing import TypeVar

import torch
import torch.distributed as dist
from torch import nn

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class DistContext:
    """This process's place in the job (rank 0 of 1 when not distributed)."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


SINGLE = DistContext()


def init_from_env(device_type: str, timeout_s: float = 600.0) -> DistContext:
    """Join the process group described by torchrun's environment (``WORLD_SIZE`` > 1)."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if world_size <= 1:
        return SINGLE
    rank, local_rank = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0"))
    backend = "nccl" if device_type == "cuda" else "gloo"
    if not dist.is_initialized():
        dist.init_process_group(backend, rank=rank, world_size=world_size,
                                timeout=timedelta(seconds=timeout_s))
    if device_type == "cuda":
        torch.cuda.set_device(local_rank)
    log.info("rank %d/%d joined (%s)", rank, world_size, backend)
    return DistContext(rank=rank, world_size=world_size, local_rank=local_rank)


def shutdown(ctx: DistContext) -> None:
    if ctx.enabled and dist.is_initialized():
        dist.destroy_process_group()


def barrier(ctx: DistContext) -> None:
    if ctx.enabled:
        dist.barrier()


def all_gather_rows(ctx: DistContext, tensor: torch.Tensor) -> torch.Tensor:
    """Concatenate every rank's ``tensor`` (rows may differ in number) in rank order."""
    if not ctx.enabled:
        return tensor
    count = torch.tensor([tensor.shape[0]], device=tensor.device)
    counts = [torch.zeros_like(count) for _ in range(ctx.world_size)]
    dist.all_gather(counts, count)
    sizes = [int(c.item()) for c in counts]
    padded = tensor.new_zeros((max(sizes), *tensor.shape[1:]))  # (max rows, ...)
    padded[: tensor.shape[0]] = tensor
    gathered = [torch.empty_like(padded) for _ in range(ctx.world_size)]
    dist.all_gather(gathered, padded.contiguous())
    return torch.cat([g[:n] for g, n in zip(gathered, sizes)], dim=0)


def average_gradients(ctx: DistContext, parameters: list[nn.Parameter]) -> None:
    """Average ``.grad`` over ranks in one flat all-reduce (the same parameters on every rank)."""
    if not ctx.enabled:
        return
    grads = [p.grad for p in parameters if p.grad is not None]
    if not grads:
        return
    flat = torch.cat([g.reshape(-1) for g in grads])
    dist.all_reduce(flat, op=dist.ReduceOp.SUM)
    flat /= ctx.world_size
    offset = 0
    for g in grads:
        g.copy_(flat[offset: offset + g.numel()].view_as(g))
        offset += g.numel()


def broadcast_module(ctx: DistContext, module: nn.Module) -> None:
    """Copy rank 0's parameters and buffers to every rank."""
    if not ctx.enabled:
        return
    with torch.no_grad():
        for tensor in list(module.parameters()) + list(module.buffers()):
            dist.broadcast(tensor.data, src=0)


def broadcast_buffers(ctx: DistContext, module: nn.Module) -> None:
    """Copy rank 0's buffers (BatchNorm running statistics) to every rank."""
    if not ctx.enabled:
        return
    for buffer in module.buffers():
        dist.broadcast(buffer.data, src=0)


ModuleT = TypeVar("ModuleT", bound=nn.Module)


def prepare_model(ctx: DistContext, model: ModuleT, *, device_type: str, sync_batchnorm: bool) -> ModuleT:
    """SyncBatchNorm on CUDA when asked, then rank 0's weights everywhere."""
    if ctx.enabled and sync_batchnorm:
        if device_type == "cuda":
            model = nn.SyncBatchNorm.convert_sync_batchnorm(model)
        else:
            log.warning("SyncBatchNorm needs CUDA; on %s each rank normalises with its own batch",
                        device_type)
    broadcast_module(ctx, model)
    return model
