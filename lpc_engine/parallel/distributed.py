"""Where this process stands among the processes training one run, and the
arithmetic that makes N processes train exactly what one process trains.

One run on N processes (`lpc run --nproc N`, `torchrun -m lpc_engine.launch`)
is data parallel: every process holds the whole dataset and draws the same
sample order and augmentations from the same seed, and each takes a
contiguous slice of every global batch (`World.shard`). Gradients are
averaged by DistributedDataParallel (replicate.py), so a process scales its
per-sample means by n_r * N / n (`BatchShare.weight`): the average is then
the gradient of the mean over the global batch even when a batch does not
split evenly. Batch norm and SupCon see the global batch too (replicate.py,
losses.py). What differs from one process is only the order of float sums.

Rank 0 is the one that decides and writes: stop requests and timed
checkpoints are its to make (`World.agree`), and only it evaluates, measures
and writes the run store. A `World()` is one process: every method is then
a no-op, so the training loop has one code path.
"""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import Tensor

from lpc_engine.errors import UsageError

# Steps between two agreements on stopping: a stop request (or a timed
# checkpoint) takes effect within this many steps; each agreement is one
# small host-side broadcast.
AGREE_STEPS = 8


@dataclass(frozen=True)
class World:
    """This process's place: rank in 0..size-1, and its GPU index on its node."""

    rank: int = 0
    size: int = 1
    local_rank: int = 0

    @staticmethod
    def current() -> World:
        """The process group torch.distributed was initialised with (parallel/group.py),
        or a single process."""
        if not (dist.is_available() and dist.is_initialized()):
            return World()
        rank = dist.get_rank()
        return World(rank, dist.get_world_size(), int(os.environ.get("LOCAL_RANK", rank)))

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def place(self, device: torch.device) -> torch.device:
        """One GPU a process: `cuda` becomes cuda:LOCAL_RANK."""
        if self.size == 1 or device.type != "cuda":
            return device
        if device.index is not None:
            raise UsageError(f"device: {device} names one GPU, but each of the {self.size} processes "
                             "takes its own (cuda:LOCAL_RANK): give --device cuda")
        if self.local_rank >= torch.cuda.device_count():
            raise UsageError(f"device: process {self.rank} has local rank {self.local_rank} but "
                             f"{torch.cuda.device_count()} GPUs are visible: one process a GPU")
        device = torch.device("cuda", self.local_rank)
        torch.cuda.set_device(device)
        return device

    def shard(self, a: int, b: int) -> tuple[int, int]:
        """This process's contiguous part [lo, hi) of the global batch [a, b)."""
        m = b - a
        return a + self.rank * m // self.size, a + (self.rank + 1) * m // self.size

    def share(self, a: int, b: int) -> BatchShare | None:
        """How this process's part of batch [a, b) counts; None alone."""
        if self.size == 1:
            return None
        lo, hi = self.shard(a, b)
        return BatchShare(self, offset=lo - a, rows=hi - lo, total=b - a)

    def agree(self, *flags: bool) -> tuple[bool, ...]:
        """Rank 0's flags, on every process (a broadcast on the CPU group:
        no device sync)."""
        if self.size == 1:
            return flags
        t = torch.tensor([float(f) for f in flags])
        dist.broadcast(t, src=0)
        return tuple(bool(v) for v in t.tolist())

    def agree_stop(self, stop: threading.Event | None, *flags: bool) -> tuple[bool, ...]:
        """Rank 0's stop request and `flags`, on every process; an agreed
        stop is set on `stop` here too, so that every process ends alike."""
        halt, *rest = self.agree(stop is not None and stop.is_set(), *flags)
        if halt and stop is not None:
            stop.set()
        return (halt, *rest)

    def same_(self, t: Tensor) -> Tensor:
        """Rank 0's values of `t`, in place, everywhere."""
        if self.size > 1:
            dist.broadcast(t, src=0)
        return t

    def sum_(self, t: Tensor) -> Tensor:
        """Sum `t` over the processes, in place."""
        if self.size > 1:
            dist.all_reduce(t, op=dist.ReduceOp.SUM)
        return t

    def any_(self, flag: Tensor) -> Tensor:
        """Make a 0/1 flag 1 everywhere if it is 1 anywhere, in place, on the
        device (no host sync)."""
        if self.size > 1:
            dist.all_reduce(flag, op=dist.ReduceOp.MAX)
        return flag

    def barrier(self) -> None:
        """Wait for every process (an all-reduce of a CPU tensor: the gloo
        group, whatever the devices)."""
        if self.size > 1:
            dist.all_reduce(torch.zeros(1))

    def same_text(self, text: str) -> str:
        """Rank 0's `text` (a run name drawn from the clock, say), everywhere."""
        if self.size == 1:
            return text
        box = [text]
        dist.broadcast_object_list(box, src=0, device=torch.device("cpu"))
        return box[0]


@dataclass(frozen=True)
class BatchShare:
    """This process's part of one global batch: rows [offset, offset + rows)
    of `total`."""

    world: World
    offset: int
    rows: int
    total: int

    @property
    def weight(self) -> float:
        """Scale of this process's per-sample means in the loss it backpropagates:
        DDP averages over N processes, and sum_r (1/N) * (n_r N / n) * mean_r
        is the mean over the global batch."""
        return self.rows * self.world.size / self.total

    def gather(self, x: Tensor) -> Tensor:
        """The global batch's rows of `x` (B_r, ...) -> (B, ...), in batch order,
        differentiable: the gradient of each row returns to its process."""
        pad = [0, 0] * (x.dim() - 1) + [self.offset, self.total - self.offset - self.rows]
        if x.is_floating_point():
            return all_reduce_sum(torch.nn.functional.pad(x, pad))
        full = x.new_zeros((self.total, *x.shape[1:]))
        full[self.offset:self.offset + self.rows] = x
        return self.world.sum_(full)


class _AllReduceSum(torch.autograd.Function):
    """y = sum over processes of x. Each process's loss depends on y, so the
    gradient of the total loss for x is the sum of the processes' gradients
    for y: the backward pass is the same all-reduce."""

    @staticmethod
    def forward(ctx, x: Tensor) -> Tensor:  # type: ignore[override]
        y = x.clone()
        dist.all_reduce(y, op=dist.ReduceOp.SUM)
        return y

    @staticmethod
    def backward(ctx, grad: Tensor) -> Tensor:  # type: ignore[override]
        g = grad.contiguous().clone()
        dist.all_reduce(g, op=dist.ReduceOp.SUM)
        return g


def all_reduce_sum(x: Tensor) -> Tensor:
    """Sum of `x` over the processes, with a gradient (see _AllReduceSum)."""
    return _AllReduceSum.apply(x)
