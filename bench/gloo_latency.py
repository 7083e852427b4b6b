"""Latency of one gloo all-reduce between two processes on this machine:
what each of a multi-process CPU step's collectives costs (PERFORMANCE.md).

    .venv/bin/python bench/gloo_latency.py
"""

from __future__ import annotations

import tempfile
import time

import torch
import torch.distributed as dist
import torch.multiprocessing as mp

SIZES = (1, 1000, 120_000)  # floats: a flag, a small bucket, the digits MLP's gradients
WARMUP, CALLS = 20, 200


def worker(rank: int, init: str) -> None:
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=init, rank=rank, world_size=2)
    for size in SIZES:
        t = torch.zeros(size)
        for _ in range(WARMUP):
            dist.all_reduce(t)
        began = time.perf_counter()
        for _ in range(CALLS):
            dist.all_reduce(t)
        if rank == 0:
            print(f"all-reduce of {size:>7} floats: {(time.perf_counter() - began) / CALLS * 1e6:8.1f} us")
    dist.destroy_process_group()


if __name__ == "__main__":
    with tempfile.TemporaryDirectory() as tmp:
        mp.spawn(worker, args=(f"file://{tmp}/rendezvous",), nprocs=2)
