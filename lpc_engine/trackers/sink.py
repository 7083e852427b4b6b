"""Live logging that can never stall or fail training: each tracker writes
from a thread of its own, fed through a bounded queue.

`send` only puts the event in the queue (it never blocks, never raises);
the thread maps it to records (mapping.py) and writes them. A tracker that
raises, opening included, is dropped for the rest of the run; a queue that
fills up (the tracker falls behind: a slow disk, a stalled server) drops
events until there is room again. Either way ONE alert of each kind goes
to `on_alert`, naming `lpc export`, which writes the complete record from
the run folder later. Training goes on.

Typical use, in a training loop that records its events in RUN_DIR::

    alerts = queue.SimpleQueue()
    sinks = open_sinks(("tensorboard",), run_dir, config, run_name, alerts.put)
    for event in events:
        sinks.send(event)
        ...  # drain `alerts` into the run's events
    sinks.close(timeout=2.0)
"""

from __future__ import annotations

import queue
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Union

from lpc_engine.events import Alert, Event
from lpc_engine.trackers import check_tracker, open_tracker
from lpc_engine.trackers.base import Tracker, one_line
from lpc_engine.trackers.mapping import records

TRACKER_FAILED = "tracker_failed"
TRACKER_BEHIND = "tracker_behind"
QUEUE_SIZE = 256  # events: a few a epoch; a latent sample is at most ~0.5 MB (runs/latents.py)
CLOSE_TIMEOUT = 5.0  # seconds a run's end waits for its trackers at most (wandb opens in ~1 s)
_CLOSE = object()  # what _next returns once the queue is drained and closing
_POLL_SECONDS = 0.05  # how soon an idle sink notices close()
# A write that has taken this long is a stalled tracker (a hung server, a
# dead network mount): the run's end stops waiting for it. Writes of one
# event take milliseconds; wandb's open (~1 s) and close are not writes.
STALL_SECONDS = 3.0

TrackerSource = Union[Tracker, Callable[[], Tracker]]


class TrackerSink:
    """Feeds one tracker from a daemon thread. `tracker_or_factory` is an open
    tracker or a callable that opens one (called on the sink's thread, so a
    slow open, such as wandb's, does not hold training up). `on_alert` is
    called from the sink's thread or the sender's: give it something
    thread-safe (a queue's put)."""

    def __init__(self, tracker_or_factory: TrackerSource, name: str, on_alert: Callable[[Alert], None],
                 queue_size: int = QUEUE_SIZE, run_dir: str | Path | None = None):
        self.name = name
        self._source = tracker_or_factory
        self._on_alert = on_alert
        self._run = str(run_dir) if run_dir else "RUN_DIR"
        self._queue: queue.Queue[Any] = queue.Queue(maxsize=queue_size)
        self._failed = threading.Event()
        self._behind = threading.Event()  # it dropped events: its live record is incomplete anyway
        self._write_began: float | None = None  # when the write in progress began (None: none is)
        self._alerted: set[str] = set()
        self._lock = threading.Lock()
        self._epoch = 0  # the last epoch an event named: where an alert belongs
        self._closing = threading.Event()
        self._thread = threading.Thread(target=self._work, name=f"lpc-tracker-{name}", daemon=True)
        self._thread.start()

    @property
    def failed(self) -> bool:
        return self._failed.is_set()

    def send(self, event: Event) -> None:
        """Queue `event` for the tracker; returns at once, whatever the tracker does."""
        epoch = getattr(event, "epoch", None)
        if isinstance(epoch, int) and epoch > self._epoch:
            self._epoch = epoch
        if self._failed.is_set() or self._closing.is_set():
            return
        try:
            self._queue.put_nowait(event)
        except queue.Full:
            self._behind.set()
            self._alert(TRACKER_BEHIND, f"{self.name} is falling behind: events from epoch {self._epoch} "
                        f"on are dropped while it catches up; training goes on; "
                        f"`lpc export {self._run} --to {self.name}` writes the complete record")

    def close(self, timeout: float = CLOSE_TIMEOUT) -> bool:
        """Let the tracker write what is queued and close, waiting `timeout`
        seconds at most; True if it did. A tracker still busy then is left to
        its daemon thread (and one alert says its record may be incomplete)."""
        self.request_close()
        return self.wait_closed(time.monotonic() + max(0.0, timeout))

    def request_close(self) -> None:
        """Take no more events; the thread closes the tracker once the queue is empty."""
        self._closing.set()

    def wait_closed(self, deadline: float) -> bool:
        """Wait for the thread until `deadline` (time.monotonic()); see close.
        A tracker that already fell behind is not waited for: its record is
        incomplete whatever it still writes, and `lpc export` completes it."""
        if self._behind.is_set():
            deadline = time.monotonic()
        while self._thread.is_alive() and time.monotonic() < deadline and not self._stalled():
            self._thread.join(min(_POLL_SECONDS, max(0.0, deadline - time.monotonic())))
        if self._thread.is_alive():
            self._alert(TRACKER_BEHIND, f"{self.name} was still writing when the run ended and was left "
                        f"to finish on its own; its record may be incomplete; "
                        f"`lpc export {self._run} --to {self.name}` writes the complete record")
            return False
        return not self._failed.is_set()

    def _stalled(self) -> bool:
        began = self._write_began
        return began is not None and time.monotonic() - began > STALL_SECONDS

    def _next(self) -> Any:
        """The next queued event, or _CLOSE once closing and the queue is empty."""
        while True:
            try:
                return self._queue.get(timeout=_POLL_SECONDS)
            except queue.Empty:
                if self._closing.is_set():
                    return _CLOSE

    def _work(self) -> None:
        tracker = None
        try:
            tracker = self._source() if _is_factory(self._source) else self._source
            while (event := self._next()) is not _CLOSE:
                batch = records(event)
                if batch:
                    self._write_began = time.monotonic()
                    tracker.write(batch)
                    self._write_began = None
            tracker.close()
        except Exception as exc:  # noqa: BLE001 - any error of any tracker library
            self._failed.set()
            self._alert(TRACKER_FAILED, f"{self.name}: {one_line(exc)}; training goes on; "
                        f"`lpc export {self._run} --to {self.name}` writes it later")
            _close_quietly(tracker)

    def _alert(self, code: str, message: str) -> None:
        with self._lock:
            if code in self._alerted:
                return
            self._alerted.add(code)
        try:
            self._on_alert(Alert(epoch=self._epoch, code=code, level="warning", message=message))
        except Exception:  # noqa: BLE001 - a broken callback must not reach training either
            pass


def _is_factory(source: TrackerSource) -> bool:
    return callable(source) and not hasattr(source, "write")


def _close_quietly(tracker: Tracker | None) -> None:
    if tracker is None:
        return
    try:
        tracker.close()
    except Exception:  # noqa: BLE001 - already failed and reported once
        pass


class TrackerSinks:
    """Several sinks as one: what `lpc run --log-to a,b` opens."""

    def __init__(self, sinks: list[TrackerSink]):
        self.sinks = sinks

    def __len__(self) -> int:
        return len(self.sinks)

    def send(self, event: Event) -> None:
        for sink in self.sinks:
            sink.send(event)

    def close(self, timeout: float = CLOSE_TIMEOUT) -> bool:
        """Close every sink within `timeout` seconds in all; True if all closed cleanly."""
        deadline = time.monotonic() + max(0.0, timeout)
        for sink in self.sinks:  # all drain at once: a slow one does not eat the others' time
            sink.request_close()
        return all([sink.wait_closed(deadline) for sink in self.sinks])


def open_sinks(log_to: tuple[str, ...], run_dir: str | Path, config: dict[str, Any], run_name: str,
               on_alert: Callable[[Alert], None], queue_size: int = QUEUE_SIZE) -> TrackerSinks:
    """One TrackerSink for each tracker of `log_to` (parse_log_to's tuple),
    writing to its default place in `run_dir`. Returns at once: each tracker
    opens on its own thread, and a failure to open is an alert, not an error."""
    sinks = []
    for name in log_to:
        check_tracker(name)
        factory = (lambda n=name: open_tracker(n, run_dir, config, run_name))
        sinks.append(TrackerSink(factory, name, on_alert, queue_size, run_dir=run_dir))
    return TrackerSinks(sinks)
