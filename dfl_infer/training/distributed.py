"""``torch.distributed`` set-up for ``dfl-train fit``: one process per device, launched by torchrun.

torchrun sets RANK, WORLD_SIZE, LOCAL_RANK (and MASTER_ADDR/PORT); without them training runs as a
single process. The backend is NCCL for CUDA devices and gloo otherwise (CPU runs and tests).
Only rank 0 writes files or logs progress.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass

import torch
import torch.distributed as dist

from dfl_infer.device import resolve_device

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class DistInfo:
    """Where this process sits: ``rank`` of ``world_size`` processes, ``local_rank`` on its node,
    and the ``device`` it trains on."""

    rank: int
    world_size: int
    local_rank: int
    device: torch.device

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


def setup(device: str | None = None) -> DistInfo:
    """Initialise the process group when launched by torchrun; pick this process's device.

    Under torchrun with CUDA, each process takes ``cuda:LOCAL_RANK`` (an explicit index in
    ``device`` is ignored there: one process per GPU is the contract).
    """
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local = int(os.environ.get("LOCAL_RANK", "0"))
    dev = resolve_device(device)
    if world > 1:
        if dev.type == "cuda":
            dev = torch.device("cuda", local)
            torch.cuda.set_device(dev)
        backend = "nccl" if dev.type == "cuda" else "gloo"
        if not dist.is_initialized():
            dist.init_process_group(backend=backend)
        logger.info("rank %d/%d on %s (%s)", rank, world, dev, backend)
    return DistInfo(rank=rank, world_size=world, local_rank=local, device=dev)


def any_rank(flag: bool, info: DistInfo) -> bool:
    """Whether ``flag`` is true on any process (``flag`` itself in a single process)."""
    if not info.distributed:
        return flag
    t = torch.tensor([1.0 if flag else 0.0], device=info.device)
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return bool(t.item() > 0)


def barrier(info: DistInfo) -> None:
    """Wait for every process (nothing in a single process)."""
    if info.distributed and dist.is_initialized():
        dist.barrier()


def cleanup() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def mean_over_ranks(values: dict[str, float], info: DistInfo) -> dict[str, float]:
    """Average scalar metrics over all processes (identity in a single process)."""
    if not info.distributed or not values:
        return values
    keys = sorted(values)
    t = torch.tensor([values[k] for k in keys], dtype=torch.float64, device=info.device)
    dist.all_reduce(t, op=dist.ReduceOp.SUM)
    t /= info.world_size
    return dict(zip(keys, t.tolist()))
