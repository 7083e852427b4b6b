"""`lpc sweep --executor local|slurm`: the grid through submitit (the
`cluster` extra), one job a grid point, each trained by `study.sweep.run_point`.

submitit pickles `point_job` and its arguments into SWEEP/.submitit and runs
it on a cluster node (slurm) or in a local subprocess (local, what the tests
exercise). The submitting process only polls: the jobs' states, and each
run's events.jsonl for the progress table. A sweep killed on the login node
loses nothing: its jobs go on, and running the command again skips what
finished and resumes what stopped.
"""

from __future__ import annotations

import shutil
import time
from dataclasses import dataclass
from pathlib import Path

from rich.console import Console
from rich.live import Live

from lpc_engine.errors import UsageError
from lpc_engine.cli.sweep_exec import Job, poll_progress, progress_table
from lpc_engine.parallel.cores import share_of_cores
from lpc_engine.study.sweep import GridPoint, exit_code, job_status, run_point


@dataclass(frozen=True)
class ClusterOptions:
    executor: str  # "local" | "slurm"
    partition: str | None = None
    gpus: int = 1  # per job (slurm)
    cpus: int = 4  # per job (slurm)
    time_limit: int = 24 * 60  # minutes per job (slurm); a timed-out run resumes on rerun


def point_job(sweep_dir: Path, point: GridPoint, state: str, threads: int | None = None) -> int:
    """The job body on the node: the grid point trained; 0 once it finished.
    `threads`: torch threads, for local jobs sharing this machine's cores."""
    return exit_code(run_point(sweep_dir, point, state, threads=threads))


def make_executor(folder: Path, opts: ClusterOptions):
    try:
        import submitit
    except ImportError:
        raise UsageError("--executor local/slurm needs submitit: pip install 'lpc-studio[cluster]'") from None
    if opts.executor == "local":
        return submitit.LocalExecutor(folder=folder)
    if shutil.which("sbatch") is None:  # submitit's own error is a traceback
        raise UsageError("--executor slurm: no sbatch on this machine's PATH; run the sweep on the "
                         "cluster's login node, or use --executor local")
    executor = submitit.AutoExecutor(folder=folder, cluster="slurm")
    params = {"timeout_min": opts.time_limit, "gpus_per_node": opts.gpus, "cpus_per_task": opts.cpus}
    if opts.partition:
        params["slurm_partition"] = opts.partition
    executor.update_parameters(**params)
    return executor


def run_submitit(sweep_dir: Path, jobs: list[Job], opts: ClusterOptions, console: Console,
                 poll_seconds: float = 1.0) -> None:
    """Submit every pending job, then follow them until all have ended."""
    executor = make_executor(sweep_dir / ".submitit", opts)
    if opts.executor == "local":
        executor.update_parameters(timeout_min=opts.time_limit)
    pending = [j for j in jobs if j.state != "done"]
    # Local jobs all start at once on this machine: share its cores, or torch's threads spin.
    threads = share_of_cores(len(pending)) if opts.executor == "local" else None
    handles = {}
    for job in pending:
        handles[job.point.name] = executor.submit(point_job, sweep_dir, job.point, job.state, threads)
        job.status = "queued"
    with Live(progress_table(jobs), console=console, refresh_per_second=2, transient=False) as live:
        while any(j.returncode is None for j in pending):
            time.sleep(poll_seconds)
            for job in pending:
                if job.returncode is None:
                    _follow(sweep_dir, job, handles[job.point.name])
            live.update(progress_table(jobs))


def _follow(sweep_dir: Path, job: Job, handle) -> None:
    poll_progress(sweep_dir, job)
    if job.epoch and job.status == "queued":
        job.status = "running"
    if handle.done():
        try:
            job.returncode = int(handle.result())
        except Exception as exc:  # the job died: killed, timed out, node failure
            job.returncode = 1
            job.error = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        job.status = job_status(job.returncode)
