"""A run's trackers, live (`log_to`): every event train() yields goes to
them, and what they report back (one alert per tracker that fails or falls
behind) goes into the run's events. They write from threads of their own
(trackers/sink.py), so training never waits for them; at the end they get
CLOSE_TIMEOUT seconds to finish, none if one already fell behind.
"""

from __future__ import annotations

import queue
from pathlib import Path
from typing import Any

from lpc_engine.config import tracker_names
from lpc_engine.events import Alert, Event
from lpc_engine.trackers import require_installed
from lpc_engine.trackers.sink import CLOSE_TIMEOUT, TrackerSinks, open_sinks


class LiveTrackers:
    """The trackers of one training session of a run."""

    def __init__(self, log_to: str, run_dir: Path, config: dict[str, Any]) -> None:
        self._alerts: queue.SimpleQueue[Alert] = queue.SimpleQueue()
        self._sinks: TrackerSinks = open_sinks(tracker_names(log_to), run_dir, config, run_dir.name,
                                               self._alerts.put)

    @staticmethod
    def check(log_to: str) -> None:
        """A UsageError naming the pip extra of a tracker whose library is
        missing: before anything is written, rather than an alert later."""
        require_installed(tracker_names(log_to))

    def send(self, event: Event) -> None:
        self._sinks.send(event)

    def alerts(self) -> list[Alert]:
        """What the trackers reported since the last call."""
        out = []
        while not self._alerts.empty():
            out.append(self._alerts.get())
        return out

    def finish(self, final: Event, timeout: float = CLOSE_TIMEOUT) -> list[Alert]:
        """Send the run's last event (their status and summary come from it),
        close them within `timeout` seconds, and what they reported."""
        self._sinks.send(final)
        self._sinks.close(timeout)
        return self.alerts()

    def abandon(self) -> None:
        """The run ended without a last event (an exception): let them close on their own."""
        for sink in self._sinks.sinks:
            sink.request_close()
