"""Following a run from its folder, whoever writes it (`lpc run`, a sweep's
process, a cluster job on a shared filesystem): the run reader's `follow`
hands over what was appended since the last look, polled off the event loop,
and each measured epoch's latent sample is read from disk (runs/latents.py).
The monitor then draws it as it draws a run the TUI trains itself."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from lpc_engine.events import Event, LatentSample, MetricsComputed
from lpc_engine.runs.reader import RunReader, run_state

from lpc_tui.history import RunHistory

POLL_SECONDS = 0.5


@dataclass
class Update:
    """What one look at the folder found (read on a worker thread)."""

    events: list[Event] = field(default_factory=list)
    latents: LatentSample | None = None
    state: str = ""


class Follower:
    def __init__(self, run_dir: str | Path):
        self.dir = Path(run_dir)
        self.reader = RunReader(self.dir)

    def start(self) -> RunHistory:
        """The run so far, as a history (every event on disk folded in)."""
        config = self.reader.config()
        h = RunHistory(name=self.dir.name, run_dir=str(self.dir), config=config,
                       epochs=int(config.get("epochs", 0)))
        self.apply(h, self.look())
        h.latents = h.latents or self.reader.latent_sample()  # measured before any row was read
        return h

    def look(self) -> Update:
        """New events, the newest latent sample if a measured epoch came, and
        the run's state; only reads (safe on a worker thread)."""
        events = self.reader.follow()
        measured = [e.epoch for e in events if isinstance(e, MetricsComputed)]
        latents = self.reader.latent_sample(measured[-1]) if measured else None
        return Update(events, latents, run_state(self.dir, self.reader.summary()))

    @staticmethod
    def apply(h: RunHistory, update: Update) -> None:
        """Fold `update` into `h` (on the event loop)."""
        for event in update.events:
            h.apply(event)
        if update.latents is not None:
            h.latents = update.latents
        if update.state:
            h.status = update.state
        h.version += 1
