"""Running a sweep's grid points, one at a time in this process or N at a
time as processes of their own (each trains its point through
`study.sweep.run_point`), round-robin over the visible GPUs; progress read
from each run's events.jsonl, so a child's output never interleaves with
the table."""

from __future__ import annotations

import math
import os
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from rich.console import Console
from rich.live import Live
from rich.table import Table

from lpc_engine.config_io import dumps_toml
from lpc_engine.events import EpochEnd
from lpc_engine.parallel.cores import share_of_cores
from lpc_engine.runs.reader import RunReader
from lpc_engine.runs.store import run_path
from lpc_engine.study.sweep import GridPoint, job_status, run_point


@dataclass
class Job:
    point: GridPoint
    state: str  # new | resume | restart | done
    status: str = "pending"  # pending | running | finished | failed | done
    epoch: int = 0
    test_acc: float | None = None
    process: subprocess.Popen | None = None
    gpu: str | None = None
    returncode: int | None = None
    threads: int = 1  # torch threads of a CPU job
    error: str = ""
    log: Path | None = field(default=None, repr=False)


def command(sweep_dir: Path, job: Job) -> list[str]:
    """The command line of a process training one grid point (worker.py),
    its config written as a TOML file beside the sweep's runs."""
    config_dir = sweep_dir / ".configs"
    config_dir.mkdir(parents=True, exist_ok=True)
    path = config_dir / f"{job.point.name}.toml"
    path.write_text(dumps_toml(job.point.cfg), encoding="utf-8")
    return [sys.executable, "-m", "lpc_engine.cli.worker", "point", str(path), str(sweep_dir),
            job.point.name, job.state]


def visible_gpus() -> list[str]:
    """CUDA device indices to spread jobs over; [] on a CPU machine."""
    try:
        import torch
        count = torch.cuda.device_count()
    except Exception:  # no CUDA build or driver: CPU only
        count = 0
    return [str(i) for i in range(count)] if count > 1 else []


def run_jobs(sweep_dir: Path, jobs: list[Job], parallel: int, console: Console,
             poll_seconds: float = 0.5) -> None:
    """Run the pending jobs, `parallel` at a time, showing a live table.
    One at a time runs in this process: no interpreter start-up per run."""
    if parallel == 1:
        return _run_inline(sweep_dir, jobs, console)
    gpus = visible_gpus()
    queue = [j for j in jobs if j.state != "done"]
    running: list[Job] = []
    with Live(progress_table(jobs), console=console, refresh_per_second=4, transient=False) as live:
        while queue or running:
            while queue and len(running) < parallel:
                job = queue.pop(0)
                job.threads = share_of_cores(parallel)
                job.gpu = gpus[len(running) % len(gpus)] if gpus else None
                _start(sweep_dir, job)
                running.append(job)
            time.sleep(poll_seconds)
            for job in list(running):
                _poll(sweep_dir, job)
                if job.returncode is not None:
                    running.remove(job)
            live.update(progress_table(jobs))


def _run_inline(sweep_dir: Path, jobs: list[Job], console: Console) -> None:
    with Live(progress_table(jobs), console=console, refresh_per_second=4, transient=False) as live:
        for job in (j for j in jobs if j.state != "done"):
            job.status = "running"
            def show(event, job=job) -> None:
                if isinstance(event, EpochEnd):
                    job.epoch, job.test_acc = event.epoch, event.test_acc
                    live.update(progress_table(jobs))
            try:
                status = run_point(sweep_dir, job.point, job.state, show)
            except Exception as exc:  # one broken run must not end the sweep
                status = "error"
                console.print(f"{job.point.name}: {type(exc).__name__}: {exc}")
            job.status = status if status in ("finished", "done", "taken", "stopped") else "failed"
            live.update(progress_table(jobs))
            if status == "stopped":  # Ctrl-C or SIGTERM: the sweep stops with the run
                break


def _start(sweep_dir: Path, job: Job) -> None:
    logs = sweep_dir / ".logs"
    logs.mkdir(parents=True, exist_ok=True)
    job.log = logs / f"{job.point.name}.log"
    env = dict(os.environ)
    if job.gpu is not None:
        env["CUDA_VISIBLE_DEVICES"] = job.gpu
    else:  # CPU jobs share the cores: oversubscribed torch threads spin (docs/PERFORMANCE.md)
        env.setdefault("OMP_NUM_THREADS", str(job.threads))
    with open(job.log, "ab") as out:
        job.process = subprocess.Popen(command(sweep_dir, job), stdout=out, stderr=subprocess.STDOUT, env=env)
    job.status = "running"


def poll_progress(sweep_dir: Path, job: Job) -> None:
    """The run's last epoch and test accuracy, from its events.jsonl."""
    rows = RunReader(run_path(sweep_dir, job.point.name)).epoch_rows()
    if rows:
        job.epoch, job.test_acc = rows[-1].epoch, rows[-1].test_acc


def _poll(sweep_dir: Path, job: Job) -> None:
    poll_progress(sweep_dir, job)
    code = job.process.poll() if job.process is not None else None
    if code is not None:
        job.returncode = code
        job.status = job_status(code)


def progress_table(jobs: list[Job]) -> Table:
    table = Table(title=f"sweep: {sum(j.status in ('finished', 'done') for j in jobs)}/{len(jobs)} done",
                  title_justify="left")
    for header in ("run", "status", "epoch", "test acc", "gpu"):
        table.add_column(header, justify="right" if header in ("epoch", "test acc") else "left")
    style = {"running": "green", "queued": "yellow", "failed": "red", "finished": "cyan", "done": "dim",
             "taken": "dim", "stopped": "yellow"}
    for j in jobs:
        acc = f"{j.test_acc:.3f}" if isinstance(j.test_acc, (int, float)) and math.isfinite(j.test_acc) else "-"
        table.add_row(j.point.name, j.status, f"{j.epoch}/{j.point.cfg.epochs}", acc, j.gpu or "-",
                      style=style.get(j.status, ""))
    return table
