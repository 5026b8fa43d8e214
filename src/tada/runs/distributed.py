"""Long runs split over the processes of ``torchrun`` or ``accelerate launch`` (one node or several; GPUs, or
CPUs on the gloo backend).

Both launchers set ``RANK`` and ``WORLD_SIZE`` (and the rendezvous variables) for every process. A run's work is
a fixed list of *blocks* (one model batch each, the same list a one-process run makes); process r takes the
blocks whose position is r modulo the world size, so every unit is computed in the same batch with the same
numbers as alone. Each process appends its finished units to its own file of the run folder
(:class:`~tada.runs.RunFolder`); after a :func:`barrier` every process reads the merged units, and the main
process (rank 0) writes the tables. A killed process's units are simply missing; running the same command
again computes only those.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import TypeVar

T = TypeVar("T")


def process_rank() -> int:
    """This process's rank in a distributed run (0 alone): ``RANK`` as torchrun and accelerate set it."""
    return int(os.environ.get("RANK", "0"))


def world_size() -> int:
    """Processes in this run (1 alone): ``WORLD_SIZE`` as torchrun and accelerate set it."""
    return int(os.environ.get("WORLD_SIZE", "1"))


def is_main() -> bool:
    return process_rank() == 0


def my_share(items: Sequence[T]) -> list[tuple[int, T]]:
    """(position, item) of the items this process computes: position = rank modulo the world size."""
    n, r = world_size(), process_rank()
    return [(i, x) for i, x in enumerate(items) if i % n == r]


def barrier() -> None:
    """Wait for every process of the run (nothing alone). Joins the launcher's process group on first use,
    over gloo: only this synchronisation crosses processes, never tensors."""
    if world_size() == 1:
        return
    import torch.distributed as dist

    join_process_group()
    dist.barrier()


def join_process_group() -> None:
    """Join the launcher's process group over gloo, once (nothing alone): what :func:`barrier` and data-parallel
    training (``torch.nn.parallel.DistributedDataParallel``) run on."""
    import torch.distributed as dist

    if world_size() > 1 and not dist.is_initialized():
        dist.init_process_group("gloo")
