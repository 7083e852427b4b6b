"""Ctrl-C and SIGTERM handled by an object for the length of a `with` block
(`lpc run` stopping with a checkpoint, `lpc run --nproc` passing them on)."""

from __future__ import annotations

import signal


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
