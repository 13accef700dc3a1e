"""The process group of a ``torchrun`` launch (``WORLD_SIZE > 1``): rank, device, barriers and agreement.

One process (``world == 1``) needs no group; every helper is then a no-op. Several processes join NCCL on GPU,
gloo on CPU; rank 0 logs, validates and checkpoints.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Iterable

import torch
import torch.distributed as dist

#: stop reasons in order of precedence when the processes disagree (the largest code wins)
_STOP_CODES = {None: 0, "max_steps": 1, "time_limit": 2, "signal": 3}


@dataclass(frozen=True)
class Processes:
    """This process's ``rank`` among ``world`` processes and its ``device``."""

    rank: int
    world: int
    device: torch.device

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def barrier(self) -> None:
        if self.world > 1:
            dist.barrier()

    def broadcast_from_main(self, tensors: Iterable[torch.Tensor]) -> None:
        """Give every process rank 0's values of ``tensors`` (in place)."""
        if self.world > 1:
            for t in tensors:
                dist.broadcast(t.data, src=0)

    def agree_on_stop(self, reason: str | None) -> str | None:
        """The stop reason of the process with the most urgent one (all replicas stop at the same step)."""
        if self.world == 1:
            return reason
        t = torch.tensor([_STOP_CODES[reason]], dtype=torch.int64, device=self.device)
        dist.all_reduce(t, op=dist.ReduceOp.MAX)
        return {v: k for k, v in _STOP_CODES.items()}[int(t.item())]


def join_processes(device: str) -> Processes:
    """Join the ``torchrun`` process group if there is one; ``device``: ``run.device`` (``"cpu"``, ``"cuda"``, ...).

    Raises ValueError for a CUDA device without CUDA (one process; several fall back to CPU and gloo).
    """
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world > 1:
        local = int(os.environ.get("LOCAL_RANK", "0"))
        use_cuda = device.startswith("cuda") and torch.cuda.is_available()
        if not dist.is_initialized():  # a dead rank fails the others after DSFNET_DIST_TIMEOUT s (default 30 min)
            from datetime import timedelta

            timeout = timedelta(seconds=float(os.environ.get("DSFNET_DIST_TIMEOUT", "1800")))
            dist.init_process_group(backend="nccl" if use_cuda else "gloo", timeout=timeout)
        dev = torch.device(f"cuda:{local}") if use_cuda else torch.device("cpu")
        if use_cuda:
            torch.cuda.set_device(dev)
        return Processes(dist.get_rank(), dist.get_world_size(), dev)
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise ValueError(f"run.device={device!r} but CUDA is not available")
    return Processes(0, 1, torch.device(device))
