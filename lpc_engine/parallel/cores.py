"""The CPU cores a run may use, and torch's thread count for a while.

On CPUs, torch threads that outnumber the cores spin at their barriers
(docs/PERFORMANCE.md): processes and threads that share a machine split
`usable_cores()` between them.
"""

from __future__ import annotations

import os
from contextlib import contextmanager
from collections.abc import Iterator

import torch


def usable_cores() -> int:
    """The cores this process may run on: a container's, a job's or a
    taskset's share, not the machine's count."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def share_of_cores(parts: int) -> int:
    """Torch threads for each of `parts` processes sharing the cores."""
    return max(1, usable_cores() // max(1, parts))


@contextmanager
def torch_threads(count: int | None) -> Iterator[None]:
    """torch's intra-op thread count set to `count` inside the block (None:
    unchanged), and the previous count back after it: it is process-wide."""
    if not count:
        yield
        return
    before = torch.get_num_threads()
    torch.set_num_threads(count)
    try:
        yield
    finally:
        torch.set_num_threads(before)
