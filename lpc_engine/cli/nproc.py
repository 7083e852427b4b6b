"""`lpc run --nproc N`: the resolved run handed to N processes (processes.py,
worker.py).

The processes get the config this command resolved, as a TOML file, and
the run's folder, so that they train exactly what a plain `lpc run` with
the same options would, and under one name even when the name comes from
the clock.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import torch

from lpc_engine.config import RunConfig
from lpc_engine.config_io import dumps_toml
from lpc_engine.errors import UsageError
from lpc_engine.cli.processes import spawn
from lpc_engine.parallel.cores import share_of_cores
from lpc_engine.training.session import pick_device


def run_processes(nproc: int, cfg: RunConfig, run_dir: Path, resume: bool, overwrite: bool,
                  as_json: bool) -> int:
    """Train the run in `run_dir` on `nproc` processes; rank 0's exit code."""
    if cfg.data.batch_size < 2 * nproc:  # batch norm needs 2 samples in each process's part
        raise UsageError(f"--nproc {nproc}: batches need at least {2 * nproc} samples "
                         f"(--batch-size is {cfg.data.batch_size}, the global batch)")
    threads = _threads(cfg.device, nproc)
    mode = "resume" if resume else "overwrite" if overwrite else "new"
    with tempfile.TemporaryDirectory(prefix="lpc-config-") as tmp:
        config = Path(tmp) / "config.toml"  # on resume: the saved config, with what may change
        config.write_text(dumps_toml(cfg), encoding="utf-8")
        return spawn(nproc, ["run", str(config), str(run_dir), mode, *(["--json"] if as_json else [])],
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
    return share_of_cores(nproc)
