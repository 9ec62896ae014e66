"""Multi-process training on PyTorch's own engine: ``torchrun --nproc_per_node N -m invflow train …``.

``torchrun`` sets ``RANK``, ``WORLD_SIZE`` and ``LOCAL_RANK``; the process group uses gloo on
the CPU and nccl on CUDA. Without those variables everything here is a no-op (one process).
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class DistContext:
    """This process's place in the job."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def select_device(name: str) -> torch.device:
    """``auto`` → CUDA when available, else CPU; ``cuda`` without a GPU is an error."""
    if name == "cuda" and not torch.cuda.is_available():
        raise ValueError("device cuda requested but no CUDA device is available")
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    return torch.device(name)


def init_distributed(device_name: str) -> tuple[DistContext, torch.device]:
    """Join the ``torchrun`` process group if there is one; pick this process's device
    (:func:`select_device`; under DDP on CUDA, the GPU of ``LOCAL_RANK``)."""
    use_cuda = select_device(device_name).type == "cuda"
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if world_size <= 1:
        return DistContext(), torch.device("cuda" if use_cuda else "cpu")
    world = DistContext(int(os.environ["RANK"]), world_size, int(os.environ.get("LOCAL_RANK", "0")))
    device = torch.device("cuda", world.local_rank) if use_cuda else torch.device("cpu")
    if use_cuda:
        torch.cuda.set_device(device)
    if not dist.is_initialized():
        dist.init_process_group("nccl" if use_cuda else "gloo", rank=world.rank, world_size=world_size)
    return world, device


def all_reduce_sum(tensor: torch.Tensor, world: DistContext) -> torch.Tensor:
    """Sum ``tensor`` over processes (in place) and return it."""
    if world.enabled:
        dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
    return tensor


def all_gather_objects(obj: Any, world: DistContext) -> list[Any]:
    """Every process's ``obj``, in rank order."""
    if not world.enabled:
        return [obj]
    out: list[Any] = [None] * world.world_size
    dist.all_gather_object(out, obj)
    return out


def barrier(world: DistContext) -> None:
    if world.enabled:
        dist.barrier()
