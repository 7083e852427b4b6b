"""What each process of a 2-process gloo group runs in test_distributed.py:
a module of its own, since spawned processes import their target by name."""

from __future__ import annotations

import multiprocessing
from datetime import timedelta
from pathlib import Path

import torch
import torch.distributed as dist

import lpc_engine.data.datasets as data_module
import lpc_engine.training.epoch as epoch_module
from lpc_engine import Control, EpochEnd, build_config, train

TIMEOUT_S = 180


def run_group(size: int, tmp: Path, flags: dict, run_dir: Path | None = None, augment: bool = False,
              stop_at_call: int = 0) -> dict:
    """Train `flags` on `size` processes; rank 0's result (see train_as_rank)."""
    ctx = multiprocessing.get_context("spawn")
    args = (size, f"file://{tmp}/rendezvous", tmp / "result.pt", flags, run_dir, augment, stop_at_call)
    procs = [ctx.Process(target=train_as_rank, args=(rank, *args)) for rank in range(size)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(TIMEOUT_S)
    codes = [p.exitcode for p in procs]
    for p in procs:
        if p.is_alive():
            p.kill()
    assert codes == [0] * size, f"exit codes {codes}"
    return torch.load(tmp / "result.pt", weights_only=True)


def train_as_rank(rank: int, size: int, init: str, result: Path, flags: dict, run_dir: Path | None,
                  augment: bool, stop_at_call: int) -> None:
    """Join the group and train; rank 0 saves its epoch rows, final status
    and weights to `result`. With `stop_at_call`, rank 0 alone asks to stop
    in its stop_at_call-th step (counted over the run)."""
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=init, rank=rank, world_size=size,
                            timeout=timedelta(seconds=TIMEOUT_S))
    if augment:
        data_module._load_synthetic = augmented_synthetic()
    control = Control()
    if stop_at_call and rank == 0:
        stop_in_call(control, stop_at_call)
    try:
        events = list(train(build_config(None, flags), control, run_dir=run_dir))
        if rank == 0:
            torch.save({"rows": rows(events), "status": events[-1].status,
                        "processes": events[0].processes}, result)
    finally:
        # Tear down together: a process that destroys its group while the other
        # still talks to it can make gloo abort the other (SIGABRT, 1 run in 12 at
        # the base commit too). Both ranks get here in these tests.
        dist.monitored_barrier(timeout=timedelta(seconds=TIMEOUT_S))
        dist.destroy_process_group()


def augmented_synthetic():
    """A loader of the synthetic set with CIFAR-like augmentation (crop padding 2, flips)."""
    real = data_module._load_synthetic
    return lambda: real()._replace(crop_padding=2, flip=True)


def stop_in_call(control: Control, call: int) -> None:
    real, count = epoch_module.compute_loss, [0]

    def counting(*args, **kwargs):
        count[0] += 1
        if count[0] == call:
            control.stop.set()
        return real(*args, **kwargs)

    epoch_module.compute_loss = counting


ROW_FIELDS = ("loss", "ce", "penalty", "train_acc", "test_acc", "latent_norm_mean", "latent_norm_cov")


def rows(events) -> list[list[float]]:
    return [[e.epoch, *(getattr(e, k) for k in ROW_FIELDS)] for e in events if isinstance(e, EpochEnd)]
