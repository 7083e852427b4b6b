"""`train(cfg, control)`: the one training loop, a generator of events.

Per epoch: gamma and the LR from their schedules, the steps, evaluation, an
`EpochEnd`; then the watch for divergence and for classes merging at the
origin, and a checkpoint every `checkpoint_every` epochs and whenever
`checkpoint_minutes` have passed (then in mid-epoch too). A stop request is
honoured between steps and leaves a checkpoint from which `resume=True`
continues exactly, even in mid-epoch. A non-finite loss never reaches the
weights (epoch.py) and ends the run as `diverged` with no checkpoint written
after it. The set-up lives in session.py.

On several processes (distributed.py) every process runs this loop; rank 0
decides when to stop and checkpoint, and alone evaluates, measures and
writes the run store.
"""

from __future__ import annotations

import dataclasses
import math
import threading
import time
from contextlib import suppress
from collections.abc import Iterator
from typing import Any

import torch
from dataclasses import dataclass, field
from pathlib import Path

from lpc_engine.runs.checkpoint_files import load_newest
from lpc_engine.config import RESUMABLE_CHANGES, RunConfig, continues, to_dict
from lpc_engine.config_io import config_from_dict, resolve
from lpc_engine.parallel.distributed import World
from lpc_engine.errors import StorageError, UsageError, describe
from lpc_engine.events import (Alert, EpochEnd, Event, MetricsComputed, RobustnessComputed,
                     RunFailed, RunFinished, RunStarted)
from lpc_engine.training.measure import model_metrics, latent_sample, robustness
from lpc_engine.training.session import ResumePoint, Session, open_session, pick_device
from lpc_engine.runs.control import ControlWatcher
from lpc_engine.runs.latents import write_latent_sample
from lpc_engine.runs.store import RunStore
from lpc_engine.training.summary import make_summary
from lpc_engine.training.tracking import LiveTrackers

__all__ = ["Control", "train", "resume_config", "pick_device"]


@dataclass
class Control:
    """Signals from the outside, checked between steps."""

    stop: threading.Event = field(default_factory=threading.Event)
    pause: threading.Event = field(default_factory=threading.Event)  # set = paused


def train(cfg: RunConfig, control: Control | None = None, run_dir: str | Path | None = None,
          resume: bool = False, overwrite: bool = False) -> Iterator[Event]:
    """Train `cfg`, yielding events; with `run_dir`, record them in the run store.

    Bad input raises UsageError before anything is written. With resume=True
    the run in `run_dir` continues from its newest checkpoint that verifies
    (from epoch 1 if it has none yet); `cfg` may only differ from the saved
    config in RESUMABLE_CHANGES: `epochs` (to extend a run), `device`,
    `precision` and `compile`. A write that fails in
    mid-run raises StorageError.
    """
    control = control or Control()
    world, point = World.current(), None
    if cfg.log_to and world.is_main:
        LiveTrackers.check(cfg.log_to)
    if resume:
        cfg, point = _resume_point(cfg, run_dir)
    world.barrier()  # every process has read its checkpoint before rank 0 tidies the folder
    s = open_session(resolve(cfg), run_dir, point, overwrite, world)
    # Stop and pause requests through the run folder (runs/control.py), for rank 0 to act on.
    watcher = ControlWatcher(s.store.dir, control) if s.store is not None else None
    if s.cfg.log_to and s.store is not None:  # rank 0 with a run folder
        s.trackers = LiveTrackers(s.cfg.log_to, s.store.dir, to_dict(s.cfg))
    began = time.perf_counter()
    try:
        yield from _tracked(_run(s, control, resume, run_dir, world), s)
    except Exception as exc:
        _record_failure(s, exc, time.perf_counter() - began)
        raise
    finally:
        if s.trackers is not None:
            s.trackers.abandon()
        if watcher is not None:
            watcher.close()
        if s.store is not None:
            s.store.release()


def _record_failure(s: Session, exc: Exception, seconds: float) -> None:
    """An error that ended the run, in its folder: its readers (`lpc runs`,
    any TUI) see it failed, and why, not a stale run whose writer vanished.
    Resuming it continues from its last checkpoint, as after a stop."""
    if s.store is None or isinstance(exc, StorageError):  # a folder that cannot be written stays as it is
        return
    epoch = int(s.rows[-1]["epoch"]) if s.rows else 0
    error = describe(exc)
    summary = {**make_summary(s.cfg, s.rows, "error", seconds, metrics=s.metrics, robustness=s.robustness),
               "error": error}
    with suppress(OSError):  # StorageError is one
        s.store.append(RunFailed(epoch=epoch, status="error", error=error, summary=summary).to_json())
        s.store.write_summary(summary)


def _tracked(events: Iterator[Event], s: Session) -> Iterator[Event]:
    """`events`, each also sent to the run's trackers, with what they report
    (an alert) after it; the last event is theirs already (`_end` closes
    them and clears `s.trackers` before it)."""
    for event in events:
        if s.trackers is None:
            yield event
            continue
        s.trackers.send(event)
        yield event
        for alert in s.trackers.alerts():
            yield s.emit(alert)


def _run(s: Session, control: Control, resume: bool, run_dir: str | Path | None,
         world: World) -> Iterator[Event]:
    """The events of an open session, from RunStarted to its last row."""
    if resume and s.store is not None and s.store.read_config() != to_dict(s.cfg):
        s.store.update_config(to_dict(s.cfg))  # a RESUMABLE_CHANGES change, once it all loaded
    yield s.emit(RunStarted(
        run_dir=str(run_dir or ""), device=str(s.device), start_epoch=s.start,
        epochs=s.cfg.epochs, num_params=sum(p.numel() for p in s.model.parameters()),
        num_train=len(s.data.y_train), num_test=len(s.data.y_test), config=to_dict(s.cfg),
        processes=world.size))
    for notice in s.notices:
        yield s.emit(notice)
    began, clock = time.perf_counter(), _Clock(s.cfg.checkpoint_minutes)
    for epoch in range(s.start, s.cfg.epochs + 1):
        row = yield from _train_epoch(s, epoch, control, clock)
        if row is None and s.saw_nonfinite():  # stopped after a non-finite step
            yield from _diverged(s, epoch, float("nan"), began)
            return
        if row is None:  # stopped in mid-epoch: save its progress too
            yield from _saved(s, epoch - 1)
            yield from _end(s, "stopped", epoch - 1, began)
            return
        yield row
        if not math.isfinite(row.loss):
            yield from _diverged(s, epoch, row.loss, began)
            return
        yield from _watch_merge(s, row, control)
        last = epoch == s.cfg.epochs
        if world.is_main and (last or (s.cfg.metrics_every and epoch % s.cfg.metrics_every == 0)):
            yield from _measure(s, epoch)
        stop, due = world.agree_stop(control.stop, clock.due())  # rank 0 decides
        if last or epoch % s.cfg.checkpoint_every == 0 or stop or due:
            yield from _saved(s, epoch)
            clock.reset()
        if stop and not last:
            yield from _end(s, "stopped", epoch, began)
            return
    if s.cfg.robustness_samples and not s.robustness and world.is_main:  # not done for this length
        yield from _attack(s, s.cfg.epochs)
    yield from _end(s, "finished", s.cfg.epochs, began)


class _Clock:
    """Falls due every `minutes` of wall time (0 = never): timed checkpoints."""

    def __init__(self, minutes: float):
        self.seconds = minutes * 60.0
        self.reset()

    def reset(self) -> None:
        self.deadline = time.monotonic() + self.seconds if self.seconds else None

    def due(self) -> bool:
        return self.deadline is not None and time.monotonic() >= self.deadline


def _train_epoch(s: Session, epoch: int, control: Control, clock: _Clock) -> Iterator[Event]:
    """Train `epoch`, with a checkpoint whenever the clock falls due in mid-epoch;
    returns its EpochEnd, or None if stopped (or a non-finite loss was seen
    when one fell due: no checkpoint is written after one)."""
    while True:
        row = s.train_epoch(epoch, control.stop, control.pause, clock.deadline)
        if row is not None:
            return row
        stop, = s.world.agree_stop(control.stop)  # rank 0's, even if a signal just came
        if stop or s.saw_nonfinite():
            return None
        yield from _saved(s, epoch - 1)
        clock.reset()


def _diverged(s: Session, epoch: int, loss: float, began: float) -> Iterator[Event]:
    """End the run: the weights are those before the first non-finite step,
    but only the last checkpoint is kept as good (no checkpoint after it)."""
    latest = s.store.latest_checkpoint() if s.store is not None else None
    where = f"checkpoint {latest.name}" if latest else "no checkpoint (none was saved yet)"
    yield s.emit(Alert(epoch=epoch, code="non_finite_loss", level="error", message=(
        f"loss is {loss} in epoch {epoch}: the weights were not updated from that step on "
        f"and the run stops; the last good state is {where}")))
    yield from _end(s, "diverged", epoch - 1, began)


def _saved(s: Session, epoch: int) -> Iterator[Event]:
    event = s.save(epoch)
    if event is not None:
        yield event


def _measure(s: Session, epoch: int) -> Iterator[Event]:
    """Collapse metrics on clean training latents, and a sample of them."""
    sample = None
    with torch.random.fork_rng(devices=[]):  # the training RNG stream stays untouched
        metrics, z = model_metrics(s.model, s.data)
        if s.cfg.latent_sample_size:
            sample = latent_sample(z, s.data.y_train, epoch, s.cfg.latent_sample_size, s.cfg.seed + epoch)
    s.metrics = metrics
    if sample is not None:
        if s.store is not None:  # beside the events: what the TUI draws, for any run (runs/latents.py)
            write_latent_sample(s.store.dir, sample)
        yield sample
    yield s.emit(MetricsComputed(epoch=epoch, metrics=metrics))


def _attack(s: Session, epoch: int) -> Iterator[Event]:
    """Table II: DeepFool robustness on the test set, at the end of the run."""
    with torch.random.fork_rng(devices=[]):
        s.robustness = robustness(s.model, s.data, s.cfg.robustness_samples, s.cfg.seed)
    yield s.emit(RobustnessComputed(epoch=epoch, table=s.robustness))


MERGE_ALERT = "merge_at_origin"


def _watch_merge(s: Session, row: EpochEnd, control: Control) -> Iterator[Event]:
    """Alert when classes merge at the origin, and apply the config's policy."""
    if not (s.preset.penalty and s.watch.update(row.train_acc, row.latent_norm_mean)):
        return
    policy = s.cfg.gamma.merge_policy
    action = {"warn": "", "pause": " Paused.", "hold": f" Holding gamma at {row.gamma:.3g}."}[policy]
    if policy == "pause":
        control.pause.set()
    if policy == "hold":
        s.gamma_hold = row.gamma if s.gamma_hold is None else min(s.gamma_hold, row.gamma)
    yield s.emit(Alert(epoch=row.epoch, code=MERGE_ALERT, message=(
        f"classes are merging at the origin: train accuracy {row.train_acc:.1%}, "
        f"latent norm {row.latent_norm_mean:.3g} at gamma {row.gamma:.3g}.{action}")))


def resume_config(run_dir: str | Path, **changes: Any) -> RunConfig:
    """The saved config of the run in `run_dir`, with the RESUMABLE_CHANGES
    given (None = keep the saved value): more epochs, another device,
    precision, compile setting, placement or trackers. What
    `train(..., resume=True)` expects."""
    store = RunStore(run_dir)
    if not store.exists():
        raise UsageError(f"resume: no run at {run_dir} (give --runs-dir and --name of an existing run)")
    refused = sorted(set(changes) - set(RESUMABLE_CHANGES))
    if refused:
        raise UsageError(f"resume: {', '.join(refused)} cannot change; only {', '.join(RESUMABLE_CHANGES)} may")
    cfg = config_from_dict(store.read_config())
    return resolve(dataclasses.replace(cfg, **{k: v for k, v in changes.items() if v is not None}))


def _resume_point(cfg: RunConfig, run_dir: str | Path | None) -> tuple[RunConfig, ResumePoint]:
    """Check `cfg` against the saved run; its newest checkpoint that verifies.
    Reads only: a refused resume leaves the run as it was."""
    saved = resume_config(run_dir) if run_dir is not None else None
    if saved is None:
        raise UsageError("resume: no run directory given")
    cfg = resolve(cfg)
    if not continues(saved, cfg):
        raise UsageError("resume: the config differs from the saved run's; only "
                         f"{', '.join(RESUMABLE_CHANGES)} may change (see resume_config)")
    path, state, skipped = load_newest(RunStore(run_dir).checkpoints())
    if state is not None and cfg.epochs < state["epoch"]:
        raise UsageError(f"epochs: the run has done {state['epoch']} epochs; cannot resume with {cfg.epochs}")
    return cfg, ResumePoint(state, path, skipped)


def _end(s: Session, status: str, epoch: int, began: float) -> Iterator[Event]:
    """The run's last event, after what its trackers report as they close."""
    summary = make_summary(s.cfg, s.rows, status, time.perf_counter() - began,
                           metrics=s.metrics, robustness=s.robustness)
    if status == "diverged":
        event: Event = RunFailed(epoch=epoch, status=status, error="non-finite loss", summary=summary)
    else:
        event = RunFinished(epoch=epoch, status=status, summary=summary)
    if s.trackers is not None:
        for alert in s.trackers.finish(event):
            yield s.emit(alert)
        s.trackers = None
    if s.store is not None:
        s.store.append(event.to_json())
        s.store.write_summary(summary)
    yield event
