"""BackgroundRun: `train()` on a worker thread, for the TUI and notebooks.

The callback runs on the worker thread: a UI must only hand the event over
(Textual's `post_message` is thread-safe) and never touch widgets from it.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path

from lpc_engine.config import RunConfig
from lpc_engine.parallel.cores import torch_threads, usable_cores
from lpc_engine.errors import describe
from lpc_engine.events import Event, RunFailed
from lpc_engine.training.train import Control, train


def threads_beside_ui() -> int:
    """Torch threads for a CPU run that shares the machine with an
    interactive UI: all cores but one. With every core busy in torch, the
    UI thread's wake-ups stall torch's thread barriers; on 2 cores a digits
    run beside the TUI took 4.5x its headless time with 2 threads and 1.2x
    with 1 (bench/tui_lag.py)."""
    return max(1, usable_cores() - 1)


class BackgroundRun:
    """One training run on its own thread, with pause, resume and stop.

    >>> run = BackgroundRun(cfg, on_event=print, run_dir="runs/a")
    >>> run.start(); run.pause(); run.resume(); run.stop(); run.join()
    """

    def __init__(self, cfg: RunConfig, on_event: Callable[[Event], None],
                 run_dir: str | Path | None = None, resume: bool = False, overwrite: bool = False,
                 train_fn: Callable[..., object] = train, cpu_threads: int | None = None):
        self.cfg, self.on_event = cfg, on_event
        self.cpu_threads = cpu_threads  # torch intra-op threads while it runs; None: unchanged
        self.run_dir, self.resume_run, self.overwrite = run_dir, resume, overwrite
        self.control = Control()
        self.last_event: Event | None = None
        self.error: BaseException | None = None
        self._train = train_fn
        self._thread = threading.Thread(target=self._work, name="lpc-train", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def pause(self) -> None:
        self.control.pause.set()

    def resume(self) -> None:
        self.control.pause.clear()

    def stop(self) -> None:
        """Ask the run to stop at the next step; it saves a checkpoint first."""
        self.control.stop.set()
        self.control.pause.clear()

    def join(self, timeout: float | None = None) -> bool:
        """Wait for the thread; True if it has ended."""
        self._thread.join(timeout)
        return not self._thread.is_alive()

    @property
    def running(self) -> bool:
        return self._thread.is_alive()

    @property
    def paused(self) -> bool:
        return self.control.pause.is_set()

    def _work(self) -> None:
        epoch = 0
        try:
            with torch_threads(self.cpu_threads):  # the count is process-wide: given back after
                for event in self._train(self.cfg, self.control, run_dir=self.run_dir,
                                         resume=self.resume_run, overwrite=self.overwrite):
                    epoch = getattr(event, "epoch", epoch)
                    self.last_event = event
                    self.on_event(event)
        except Exception as exc:  # surfaced as an event: the UI stays alive
            self.error = exc
            self.last_event = RunFailed(epoch=epoch, status="error", error=describe(exc))
            self.on_event(self.last_event)
