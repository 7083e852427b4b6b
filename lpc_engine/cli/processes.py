"""`lpc run --nproc N`: the N processes of one run, started and watched.

`spawn` starts `python -m lpc_engine.cli.worker run ...` N times, in
sessions of their own, and forwards Ctrl-C and SIGTERM to each, so that rank
0 decides the stop and every process checkpoints in step (distributed.py).
Each process joins the group (parallel/group.py) through LPC_DIST_INIT, a
rendezvous file, with no port to pick. Rank 0 writes to this terminal; the
others' output is kept and shown only if one of them fails.
"""

from __future__ import annotations

import ctypes
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from lpc_engine.training.signals import OnSignals

# After one process failed, how long the others get to stop on their own.
GRACE_SECONDS = 20.0


def spawn(nproc: int, args: list[str], threads: int | None = None) -> int:
    """Run `python -m lpc_engine.cli.worker ARGS` as `nproc` processes; each
    gets `threads` torch threads if given (CPU runs share the cores). Rank
    0's exit code, or 1 if another process failed first (its stderr shown:
    the others exit 0 whenever they did their part, even of a failed run)."""
    with tempfile.TemporaryDirectory(prefix="lpc-nproc-") as tmp, _ForwardSignals() as signals:
        logs = [Path(tmp) / f"rank{rank}.log" for rank in range(nproc)]
        for rank in range(nproc):
            if signals.count:  # interrupted while starting: the group can never form
                _end(signals.procs, 0.0)
                return 130
            env = {**os.environ, "RANK": str(rank), "LOCAL_RANK": str(rank),
                   "WORLD_SIZE": str(nproc), "LOCAL_WORLD_SIZE": str(nproc),
                   "LPC_DIST_INIT": f"file://{tmp}/rendezvous", "LPC_LAUNCHER_PID": str(os.getpid())}
            if threads:
                env["OMP_NUM_THREADS"] = str(threads)
            with open(logs[rank], "wb") as log:
                signals.procs.append(subprocess.Popen(
                    [sys.executable, "-m", "lpc_engine.cli.worker", *args], env=env,
                    start_new_session=True,  # signals come from here, once each
                    stdout=None if rank == 0 else subprocess.DEVNULL,
                    stderr=None if rank == 0 else log))
        return _wait(signals.procs, logs, signals=signals)


def _wait(procs: list[subprocess.Popen], logs: list[Path], grace: float = GRACE_SECONDS,
          signals: _ForwardSignals | None = None) -> int:
    """Rank 0's exit code once it ends, or 1 once another process fails;
    130 once ABORT_SECONDS have passed since a second Ctrl-C."""
    while True:
        codes = [p.poll() for p in procs]
        failed = next((r for r, c in enumerate(codes) if r and c not in (None, 0)), None)
        if codes[0] is not None or failed is not None:
            break
        if signals is not None and signals.abort_due():  # stuck where no handler runs
            _end(procs, 0.0)
            return 130
        time.sleep(0.1)
    if codes[0] is None:  # another process failed: rank 0 gets a moment to notice
        _report(failed, codes[failed], logs[failed], len(procs))
        _end(procs, grace)
        return 1
    # Without rank 0 the others cannot go on; after a success they are ending too.
    _end(procs, grace if codes[0] == 0 else 0.0)
    return codes[0] if codes[0] >= 0 else 128 - codes[0]  # killed by signal k: 128 + k, as shells say


def _report(rank: int, code: int, log: Path, nproc: int) -> None:
    tail = log.read_text(errors="replace").strip().splitlines()[-5:]
    sys.stderr.write(f"lpc: error: process {rank} of {nproc} failed (exit {code}); the run "
                     "stopped, its last checkpoint intact (continue with --resume)\n")
    for line in tail:
        sys.stderr.write(f"  [rank {rank}] {line}\n")


def _end(procs: list[subprocess.Popen], grace: float) -> None:
    """Wait up to `grace` seconds for the processes, then kill the rest."""
    deadline = time.monotonic() + grace
    for p in procs:
        try:
            p.wait(timeout=max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()


def stop_with_launcher() -> None:
    """In a process `spawn` started: a SIGTERM (stop with a checkpoint) when
    the launcher dies, killed or its terminal closed, so that no process is
    left holding a GPU. Linux's prctl(PR_SET_PDEATHSIG); elsewhere nothing."""
    launcher = os.environ.get("LPC_LAUNCHER_PID")
    if launcher is None:  # torchrun's: it watches its own
        return
    try:
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
    except (OSError, AttributeError):
        return
    if os.getppid() != int(launcher):  # it died before the line above
        os.kill(os.getpid(), signal.SIGTERM)


_PR_SET_PDEATHSIG = 1
# After a second Ctrl-C, how long the processes get to abort before they are killed
# (one blocked in a collective or a CUDA call cannot run its handler).
ABORT_SECONDS = 5.0


class _ForwardSignals(OnSignals):
    """Ctrl-C and SIGTERM reach this process only (the children have their
    own sessions) and are passed to each child once: rank 0 then stops the
    run with a checkpoint, and a second Ctrl-C aborts every process (and
    ABORT_SECONDS later kills what did not)."""

    def __init__(self) -> None:
        self.procs: list[subprocess.Popen] = []
        self.count, self.abort_at = 0, None

    def _handle(self, signum: int, frame: object) -> None:
        self.count += 1
        if self.count == 2:
            self.abort_at = time.monotonic() + ABORT_SECONDS
        for p in self.procs:
            if p.poll() is None:
                p.send_signal(signum)

    def abort_due(self) -> bool:
        return self.abort_at is not None and time.monotonic() >= self.abort_at
