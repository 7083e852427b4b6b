"""Ctrl-C and SIGTERM handled by an object for the length of a `with` block:
a headless run stopping with a checkpoint (`lpc run`, a sweep's process, a
spawned process of several), and `lpc run --nproc` passing them on."""

from __future__ import annotations

import signal
from collections.abc import Callable


class OnSignals:
    """Subclasses define `_handle(signum, frame)`; it runs on SIGINT and
    SIGTERM inside the block, and the previous handlers come back after it."""

    def _handle(self, signum: int, frame: object) -> None:
        raise NotImplementedError

    def __enter__(self):
        self._saved = {sig: signal.signal(sig, self._handle) for sig in (signal.SIGINT, signal.SIGTERM)}
        return self

    def __exit__(self, *exc: object) -> None:
        for sig, handler in self._saved.items():
            signal.signal(sig, handler)


STOP_NOTICE = "stopping after this step; saving a checkpoint (Ctrl-C again to abort)"


class StopOnSignals(OnSignals):
    """Ctrl-C or SIGTERM asks the run to stop (it checkpoints first, between
    steps); a second Ctrl-C interrupts at once. `notify` tells the user."""

    def __init__(self, stop, notify: Callable[[str], None] = lambda message: None):
        self.stop, self.notify = stop, notify  # stop: a threading.Event

    def _handle(self, signum: int, frame: object) -> None:
        if self.stop.is_set() and signum == signal.SIGINT:
            raise KeyboardInterrupt
        self.notify(STOP_NOTICE)
        self.stop.set()
