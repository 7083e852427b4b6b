"""Requests to a run through its folder: RUN/control.json, so that a run
another process trains (headless, a sweep's, a job on another host sharing
the filesystem) can be stopped or paused from anywhere: `lpc stop RUN_DIR`,
the TUI's x and p.

The requester writes {"request": "stop" | "pause" | "resume", "at": time}
atomically; the writer polls the file (a stat every POLL_SECONDS, which works
on network filesystems) and sets its Control's events, which the training
loop checks between steps as it checks Ctrl-C. A stop leaves a checkpoint and
ends the run as `stopped`. The writer removes the file once it acted on a
stop, and when it starts, so that an old request never stops a new session.
"""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

from lpc_engine.errors import UsageError
from lpc_engine.runs.durable import atomic_write

NAME = "control.json"
REQUESTS = ("stop", "pause", "resume")
POLL_SECONDS = 0.5


def request(run_dir: str | Path, what: str) -> None:
    """Ask the run in `run_dir` to stop, pause or resume."""
    if what not in REQUESTS:
        raise UsageError(f"request: expected one of {', '.join(REQUESTS)}, got {what!r}")
    path = Path(run_dir) / NAME
    try:
        atomic_write(path, json.dumps({"request": what, "at": time.time()}).encode())
    except OSError as exc:
        raise UsageError(f"cannot write {path}: {exc.strerror or exc}") from None


def pending(run_dir: str | Path) -> str | None:
    """The request waiting in the folder, if any."""
    try:
        value = json.loads((Path(run_dir) / NAME).read_text(encoding="utf-8")).get("request")
    except (OSError, ValueError, AttributeError):
        return None
    return value if value in REQUESTS else None


def clear(run_dir: str | Path) -> None:
    (Path(run_dir) / NAME).unlink(missing_ok=True)


class ControlWatcher:
    """The writer's side: a thread that turns requests into `control`'s
    stop and pause events until `close()`."""

    def __init__(self, run_dir: str | Path, control, poll_seconds: float = POLL_SECONDS):
        self.dir, self.control, self.poll = Path(run_dir), control, poll_seconds
        self._done = threading.Event()
        clear(self.dir)  # a request from before this session is not for it
        self._thread = threading.Thread(target=self._watch, name="lpc-control", daemon=True)
        self._thread.start()

    def _watch(self) -> None:
        while not self._done.wait(self.poll):
            what = pending(self.dir)
            if what == "stop":
                self.control.pause.clear()
                self.control.stop.set()
                clear(self.dir)
            elif what == "pause":
                self.control.pause.set()
            elif what == "resume":
                self.control.pause.clear()
                clear(self.dir)

    def close(self) -> None:
        self._done.set()
        self._thread.join(timeout=5)
