"""`lpc run --nproc N`: the resolved run handed to N processes (launch.py).

The processes get the config this command resolved, as a TOML file, and
the run's folder by name, so that they train exactly what a plain
`lpc run` with the same options would, and under one name even when the
name comes from the clock.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import torch

from .config import RunConfig
from .config_io import dumps_toml
from .errors import UsageError
from .launch import spawn
from .session import pick_device


def run_processes(nproc: int, cfg: RunConfig, run_dir: Path, resume: bool, overwrite: bool,
                  as_json: bool) -> int:
    """Train the run in `run_dir` on `nproc` processes; rank 0's exit code."""
    if cfg.data.batch_size < 2 * nproc:  # batch norm needs 2 samples in each process's part
        raise UsageError(f"--nproc {nproc}: batches need at least {2 * nproc} samples "
                         f"(--batch-size is {cfg.data.batch_size}, the global batch)")
    threads = _threads(cfg.device, nproc)
    place = ["--runs-dir", str(run_dir.parent), "--name", run_dir.name] + (["--json"] if as_json else [])
    if resume:  # the saved config, with what a resume may change
        return spawn(nproc, ["--resume", *place, "--epochs", str(cfg.epochs), "--device", cfg.device,
                             "--precision", cfg.precision,
                             "--compile" if cfg.compile else "--no-compile"], threads)
    with tempfile.TemporaryDirectory(prefix="lpc-config-") as tmp:
        config = Path(tmp) / "config.toml"
        config.write_text(dumps_toml(cfg), encoding="utf-8")
        return spawn(nproc, ["--config", str(config), *place, *(["--overwrite"] if overwrite else [])],
                     threads)


def _threads(device: str, nproc: int) -> int | None:
    """Torch threads of each process: CPU processes share the cores
    (oversubscribed threads spin: docs/PERFORMANCE.md); None on GPUs."""
    where = pick_device(device)
    if where.type == "cuda":
        if where.index is not None:
            raise UsageError(f"--nproc: give --device cuda, not {device}: process k takes cuda:k "
                             "(choose the GPUs with CUDA_VISIBLE_DEVICES)")
        if nproc > torch.cuda.device_count():
            raise UsageError(f"--nproc {nproc}: only {torch.cuda.device_count()} GPUs are visible")
        return None
    if where.type != "cpu":
        raise UsageError(f"--nproc: runs on cpu or cuda, not {device}")
    return max(1, _cores() // nproc)


def _cores() -> int:
    """The cores this process may use (a container's or a job's share)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1
