"""Joining the process group of one run trained by several processes
(`lpc run --nproc N`, torchrun): RANK, WORLD_SIZE and torchrun's
MASTER_ADDR/MASTER_PORT, or LPC_DIST_INIT (a torch init_method URL: what
`lpc run --nproc` uses, a rendezvous file, no port to pick). CUDA runs take
one GPU a process over NCCL; CPU tensors (and CPU runs) use gloo, which also
carries rank 0's decisions without a device sync (distributed.py)."""

from __future__ import annotations

import os
from datetime import timedelta

import torch
import torch.distributed as dist

# How long a process waits in a collective for the others: rank 0 alone
# evaluates, measures and attacks while the others wait at the next step.
TIMEOUT_MINUTES = float(os.environ.get("LPC_DIST_TIMEOUT_MINUTES", "60"))


def join_group() -> None:
    """Join the process group this process's environment describes."""
    backend = "cpu:gloo,cuda:nccl" if torch.cuda.is_available() else "gloo"
    # No torch.cuda.set_device here: a CPU run on a GPU box would make a CUDA
    # context per process. World.place sets it for CUDA runs, and everything
    # before it (barriers, the run name) goes over gloo.
    dist.init_process_group(backend, init_method=os.environ.get("LPC_DIST_INIT", "env://"),
                            rank=int(os.environ["RANK"]), world_size=int(os.environ["WORLD_SIZE"]),
                            timeout=timedelta(minutes=TIMEOUT_MINUTES))


def leave_group() -> None:
    if dist.is_initialized():
        dist.destroy_process_group()
