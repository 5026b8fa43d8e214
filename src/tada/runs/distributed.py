"""Long runs split over the processes of ``torchrun`` or ``accelerate launch`` (one node or several; GPUs, or
CPUs on the gloo backend).

Both launchers set ``RANK`` and ``WORLD_SIZE`` (and the rendezvous variables) for every process. A run's work is
a fixed list of *blocks* (one model batch each, the same list a one-process run makes); process r takes the
blocks whose position is r modulo the world size, so every unit is computed in the same batch with the same
numbers as alone. Each process appends its finished units to its own file of the run folder
(:class:`~tada.runs.RunFolder`); after a :func:`barrier` every process reads the merged units, and the main
process (rank 0) writes the tables. A killed process's units are simply missing; running the same command
again computes only those. Work whose result every process needs at once (a CAA fit's activations) is
exchanged by :func:`gather` instead.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from typing import TypeVar

T = TypeVar("T")


_solo: ContextVar[bool] = ContextVar("tada_solo", default=False)


def process_rank() -> int:
    """This process's rank in a distributed run (0 alone): ``RANK`` as torchrun and accelerate set it."""
    return 0 if _solo.get() else int(os.environ.get("RANK", "0"))


def world_size() -> int:
    """Processes in this run (1 alone): ``WORLD_SIZE`` as torchrun and accelerate set it."""
    return 1 if _solo.get() else int(os.environ.get("WORLD_SIZE", "1"))


@contextmanager
def solo():
    """Within the block this process works as if alone (work one process does while the others wait, e.g. a fit
    by the main process): nothing is split and nothing waits for the others."""
    token = _solo.set(True)
    try:
        yield
    finally:
        _solo.reset(token)


def gather(share: Sequence[tuple[int, T]]) -> list[T]:
    """Every process's (position, item) pairs of :func:`my_share`, merged: the items in position order, on every
    process (``torch.distributed.all_gather_object`` over gloo; alone, the items as they are)."""
    if world_size() == 1:
        return [x for _, x in sorted(share, key=lambda p: p[0])]
    import torch.distributed as dist

    join_process_group()
    parts: list = [None] * world_size()
    dist.all_gather_object(parts, list(share))
    return [x for _, x in sorted((p for part in parts for p in part), key=lambda p: p[0])]


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
