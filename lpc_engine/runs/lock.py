"""One writer per run: RUN/lock, an OS file lock (flock) held for the whole
run by whatever trains it (`lpc run`, the TUI's thread, a sweep's process, a
cluster job), naming its pid, host and start time.

- A second writer is refused (UsageError: exit 2, one line naming the holder).
- A lock left by a dead process on this host is taken over, with a notice
  (flock itself is released by the kernel when a process dies).
- On another host (a shared filesystem, where flock may not reach across
  machines) the holder is judged by its heartbeat: the writer touches the
  file every HEARTBEAT_SECONDS, and one silent for STALE_SECONDS is gone.
- The writer removes the file when it lets go, however its run ended; one
  left behind (a writer killed, a machine that went down) marks the run `stale`.
- Readers never take the lock: `holder` and `writer_alive` only read the file.
"""

from __future__ import annotations

import fcntl
import json
import os
import socket
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from lpc_engine.errors import UsageError

NAME = "lock"
HEARTBEAT_SECONDS = 20.0
STALE_SECONDS = 120.0


@dataclass(frozen=True)
class Holder:
    pid: int
    host: str
    started: float  # time.time() when the writer took the lock
    heartbeat: float  # the lock file's mtime

    def describe(self) -> str:
        began = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(self.started))
        return f"pid {self.pid} on {self.host}, since {began}"


def holder(run_dir: str | Path) -> Holder | None:
    """Who holds (or held) the run's lock, from the file alone; None if none."""
    path = Path(run_dir) / NAME
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
        return Holder(int(data["pid"]), str(data["host"]), float(data["started"]), path.stat().st_mtime)
    except (OSError, ValueError, KeyError, TypeError):
        return None


def writer_alive(h: Holder, now: float | None = None) -> bool:
    """True if the holder still writes: its process lives (this host) or its
    heartbeat is recent (another host)."""
    if h.host == socket.gethostname():
        return pid_alive(h.pid)
    return (now or time.time()) - h.heartbeat < STALE_SECONDS


def pid_alive(pid: int) -> bool:
    """True if process `pid` exists on this host."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process: alive
        return True
    return True


class RunLock:
    """The writer's side: `acquire` (or a UsageError), `release` at the end."""

    def __init__(self, run_dir: str | Path):
        self.path = Path(run_dir) / NAME
        self._fd: int | None = None
        self._stop = threading.Event()
        self._beat: threading.Thread | None = None

    def acquire(self) -> str:
        """Take the lock for this process; a notice if a dead writer's was taken over, else ""."""
        before = holder(self.path.parent)
        if before is not None and before.host != socket.gethostname() and writer_alive(before):
            raise _held(self.path.parent, before)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)
            raise _held(self.path.parent, holder(self.path.parent)) from None
        self._fd = fd
        me = {"pid": os.getpid(), "host": socket.gethostname(), "started": time.time()}
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps(me).encode(), 0)
        os.fsync(fd)
        self._beat = threading.Thread(target=self._heartbeat, name="lpc-lock-heartbeat", daemon=True)
        self._beat.start()
        if before is None or before.pid == os.getpid():
            return ""
        return f"took over the lock of a writer that is gone ({before.describe()})"

    def _heartbeat(self) -> None:
        while not self._stop.wait(HEARTBEAT_SECONDS):
            try:
                os.utime(self.path)
            except OSError:
                pass  # a folder that stopped taking writes: the training loop reports it

    def release(self) -> None:
        """Let go, removing the file: one left behind means its writer died."""
        if self._fd is None:
            return
        self._stop.set()
        self.path.unlink(missing_ok=True)
        os.close(self._fd)  # closing the descriptor releases the flock
        self._fd = None

    @property
    def held(self) -> bool:
        return self._fd is not None


def _held(run_dir: Path, h: Holder | None) -> UsageError:
    who = h.describe() if h else "another process"
    return UsageError(f"run {run_dir} is being written by {who}; one writer per run "
                      f"(stop it with `lpc stop {run_dir}`, or wait for it)")
