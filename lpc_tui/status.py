"""One-line texts: the status bar and the event log's lines."""

from __future__ import annotations

import re

from rich.markup import escape

from lpc_engine.events import (Alert, CheckpointSaved, EpochEnd, Event, MetricsComputed,
                               RobustnessComputed, RunFailed, RunFinished, RunStarted)

from lpc_tui.history import RunHistory
from lpc_tui.widgets.tables import fmt

STATUS_STYLE = {"running": "green", "paused": "yellow", "finished": "cyan", "starting": "green",
                "stopped": "yellow", "diverged": "red", "error": "red"}


def clock(seconds: float | None) -> str:
    if seconds is None:
        return "—"
    seconds = int(round(seconds))
    h, rest = divmod(seconds, 3600)
    return f"{h}:{rest // 60:02d}:{rest % 60:02d}" if h else f"{rest // 60}:{rest % 60:02d}"


def status_line(h: RunHistory, paused: bool) -> str:
    state = "paused" if paused and h.status == "running" else h.status
    if state == "idle":
        return " [b]idle[/b] · configure a run and press s · ? for keys"
    last = h.last
    parts = [f"[b {STATUS_STYLE.get(state, '')}]{state}[/]", f"epoch {h.epoch}/{h.epochs}"]
    if last:
        parts += [f"γ {last['gamma']:.3g}", f"{last.get('samples_per_s', 0):,.0f} samples/s",
                  f"ETA {clock(h.eta_seconds())}" if state in ("running", "paused") else
                  f"test acc {fmt(h.summary.get('test_acc', last.get('test_acc')))}"]
    parts.append(escape(h.name))  # last: the first to be cut on a narrow terminal
    return " " + " · ".join(p for p in parts if p)


def event_line(event: Event) -> str:
    """The event log's line for an event ('' for the ones it skips)."""
    if isinstance(event, EpochEnd):
        return (f"epoch {event.epoch}: loss {event.loss:.4g} (CE {event.ce:.4g}, penalty {event.penalty:.3g})"
                f" · acc {event.train_acc:.3f}/{fmt(event.test_acc)} · γ {event.gamma:.3g} · ‖z‖ "
                f"{event.latent_norm_mean:.3g}")
    if isinstance(event, RunStarted):
        return (f"[b]started[/b] on {event.device}: epochs {event.start_epoch}..{event.epochs}, "
                f"{event.num_params:,} parameters, {event.num_train:,} training samples")
    if isinstance(event, MetricsComputed):
        m = event.metrics
        return (f"metrics at epoch {event.epoch}: R {fmt(m.get('separation_ratio'))}, tr Σ_W/tr Σ_T "
                f"{fmt(m.get('sigma_w_trace_ratio'))}, peak distance {fmt(m.get('gmm_peak_distance_mean'))}")
    if isinstance(event, RobustnessComputed):
        return f"robustness: mean ‖r‖/‖x‖ {fmt(event.table.get('robustness_mean'))}"
    if isinstance(event, CheckpointSaved):
        return f"[dim]checkpoint after epoch {event.epoch}[/]"
    if isinstance(event, Alert):
        return f"[b {'red' if event.level == 'error' else 'yellow'}]{event.code}[/]: {escape(event.message)}"
    if isinstance(event, RunFinished):
        return f"[b]{event.status}[/b] after epoch {event.epoch}"
    if isinstance(event, RunFailed):
        return f"[b red]{event.status}[/] after epoch {event.epoch}: {escape(sentence(event.error))}"
    return ""


_TYPE_PREFIX = re.compile(r"^(?:[A-Za-z_][\w.]*\.)?[A-Z]\w*(?:Error|Exception|Interrupt|Exit)\b:?\s*")


def sentence(error: str) -> str:
    """An error as the user reads it: no exception class in front."""
    return _TYPE_PREFIX.sub("", error.strip(), count=1) or error.strip()
