"""A run trained in a process of its own, with no one at a UI: `lpc run`,
each process of `lpc run --nproc`, and a sweep's grid points.

Ctrl-C or SIGTERM stops it at the next step with a checkpoint (a second
Ctrl-C interrupts at once), and the `pause` merge policy, with no one to
resume, stops it the same way; `--resume` goes on from there.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator
from pathlib import Path

from lpc_engine.config import RunConfig
from lpc_engine.events import Alert, Event
from lpc_engine.parallel.distributed import World
from lpc_engine.training.signals import StopOnSignals
from lpc_engine.training.train import MERGE_ALERT, Control, train

PAUSE_NOTICE = ("merge policy 'pause' with no one to resume: stopping with a checkpoint; "
                "continue with --resume")


def train_headless(cfg: RunConfig, run_dir: str | Path, resume: bool = False, overwrite: bool = False,
                   notify: Callable[[str], None] = lambda message: None,
                   control: Control | None = None) -> Iterator[Event]:
    """The events of `train(cfg, ...)` under the headless rules above.

    Set-up errors (bad data, a run that exists) raise here, before anything
    is shown: the training starts at this call, and the signals are handled
    while the events are drawn."""
    control = control or Control()
    events = train(cfg, control, run_dir=run_dir, resume=resume, overwrite=overwrite)
    first = next(events)
    return _stoppable(itertools.chain([first], events), control, notify)


def _stoppable(events: Iterator[Event], control: Control,
               notify: Callable[[str], None]) -> Iterator[Event]:
    # On several processes a signal is for rank 0 to act on (distributed.py):
    # the others' stop comes from it, so their handler sets a stop of its own.
    stop = control.stop if World.current().is_main else Control().stop
    with StopOnSignals(stop, notify):
        for event in events:
            yield event
            if isinstance(event, Alert) and event.code == MERGE_ALERT and control.pause.is_set():
                notify(PAUSE_NOTICE)  # a pause asked through the run folder waits for its resume
                control.stop.set()
                control.pause.clear()


def last_of(events: Iterator[Event], on_event: Callable[[Event], None] = lambda event: None
            ) -> Event | None:
    """Draw every event, handing each to `on_event`; the last one."""
    last = None
    for last in events:
        on_event(last)
    return last
