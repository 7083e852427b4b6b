"""`lpc export RUN_DIR --to tensorboard|wandb|mlflow`: a run, finished or
still training, written to a tracker after the fact, from its folder (the
one source of truth): events.jsonl through the run reader and the latent
sample of each measured epoch from RUN/latents/, mapped as live logging
maps them (mapping.py).

An export is a complete copy of the run, so exporting again never doubles
a curve: into TensorBoard it replaces the destination folder's earlier
event files (live logging's included: the export holds all of it); into
W&B and MLflow it makes a new run (those trackers keep runs apart), named
after the run folder. The one refusal: TensorBoard files of a run still
training, which its live logging may be writing.
"""

from __future__ import annotations

import time
import zipfile
from collections.abc import Callable, Iterator
from pathlib import Path

from lpc_engine.errors import UsageError
from lpc_engine.events import (Event, LatentSample, MetricsComputed, RobustnessComputed, RunFailed,
                               RunFinished)
from lpc_engine.runs.reader import RunReader, run_state
from lpc_engine.trackers import check_tracker, default_out, open_tracker
from lpc_engine.trackers.base import Tracker, one_line
from lpc_engine.trackers.mapping import records
from lpc_engine.trackers.tb_writer import EVENT_FILES

POLL_SECONDS = 0.5  # how often --follow looks for new rows
_ENDS = (RunFinished, RunFailed)
# Events of a measured epoch that come after its latent sample in a live run.
_AFTER_SAMPLE = (MetricsComputed, RobustnessComputed, RunFinished, RunFailed)


def export_run(run_dir: str | Path, to: str, out: Path | None = None, follow: bool = False,
               on_open: Callable[[Tracker], None] | None = None,
               poll_seconds: float = POLL_SECONDS) -> int:
    """Write the run in `run_dir` to tracker `to`, synchronously; the number
    of events written (latent samples included). `out`: where the tracker's
    files go (trackers.default_out when None). With follow=True a run that
    is still training is followed until it ends (its RunFinished or
    RunFailed, or its writer gone). `on_open(tracker)` is called once the
    tracker is open (tracker.location says where it writes)."""
    run_dir = Path(run_dir)
    check_tracker(to)
    reader = RunReader(run_dir)
    if not reader.exists():
        raise UsageError(f"export: {run_dir} is not a run directory (no config.json)")
    _refuse_a_live_log(to, run_dir, out)
    tracker = _open(to, run_dir, reader.config(), out)
    if on_open is not None:
        on_open(tracker)
    written = 0
    try:
        for event in _events(reader, run_dir, follow, poll_seconds):
            batch = records(event)
            if batch:
                tracker.write(batch)
            written += 1
    finally:
        tracker.close()
    return written


def _open(to: str, run_dir: Path, config: dict, out: Path | None) -> Tracker:
    """The tracker, or a UsageError in one line (a folder that cannot be
    written, a tracking URI that does not answer): nothing was exported."""
    try:
        return open_tracker(to, run_dir, config, run_dir.name, out, fresh=True)
    except UsageError:
        raise
    except Exception as exc:  # noqa: BLE001 - any error of any tracker library
        raise UsageError(f"export: cannot open {to}: {one_line(exc)}") from None


def _refuse_a_live_log(to: str, run_dir: Path, out: Path | None) -> None:
    """Replacing TensorBoard files that a running run may be writing live
    (`lpc run --log-to tensorboard`) would lose its next epochs: refused."""
    if to != "tensorboard":
        return
    folder = Path(out) if out is not None else default_out(to, run_dir)
    running = run_state(run_dir, RunReader(run_dir).summary()) in ("running", "paused")
    if running and any(folder.glob(EVENT_FILES)):
        raise UsageError(f"export: {folder} holds the TensorBoard log of a run still training, which "
                         f"it may be writing live; export elsewhere with --out, or once the run ends")


def _events(reader: RunReader, run_dir: Path, follow: bool, poll_seconds: float) -> Iterator[Event]:
    """The run's events in the order training yielded them, latent samples in
    their place; with `follow`, until the run ends."""
    samples = _Samples(reader)
    while True:
        # The state is read before the rows: a run seen running may still add
        # rows, so it gets one more read once it has stopped.
        alive = follow and run_state(run_dir, reader.summary()) in ("running", "paused")
        batch = reader.follow()
        samples.refresh()
        for event in batch:
            yield from samples.due(event)
            yield event
        ended = bool(batch) and isinstance(batch[-1], _ENDS)
        if not alive or ended:
            break
        time.sleep(poll_seconds)
    yield from samples.rest()


class _Samples:
    """The latent samples on disk (one a measured epoch), each handed out
    once, where it belongs: after its epoch's row and before its metrics, as
    train() yields them, so that W&B (which wants steps in order) keeps them."""

    def __init__(self, reader: RunReader):
        self.reader = reader
        self.pending: list[int] = []
        self.done: set[int] = set()

    def refresh(self) -> None:
        # Listed after the rows are read: a sample is on disk before its
        # epoch's MetricsComputed row is appended (training/train.py _measure).
        self.pending = [e for e in self.reader.latent_epochs() if e not in self.done]

    def due(self, event: Event) -> Iterator[LatentSample]:
        epoch = getattr(event, "epoch", None)
        if not isinstance(epoch, int):
            return
        while self.pending and (self.pending[0] < epoch
                                or (self.pending[0] == epoch and isinstance(event, _AFTER_SAMPLE))):
            yield from self._take()

    def rest(self) -> Iterator[LatentSample]:
        while self.pending:
            yield from self._take()

    def _take(self) -> Iterator[LatentSample]:
        epoch = self.pending.pop(0)
        self.done.add(epoch)
        try:
            sample = self.reader.latent_sample(epoch)
        except (OSError, ValueError, KeyError, zipfile.BadZipFile):
            return  # a damaged file: the histograms of that epoch are left out, not the run
        if sample is not None:
            yield sample
