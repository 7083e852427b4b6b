"""What the UI knows about one run: a plain model fed by engine events or by
the rows of a saved run's events.jsonl. No widgets here; screens read it."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lpc_engine.events import (Alert, EpochEnd, Event, LatentSample, MetricsComputed,
                               RobustnessComputed, RunFailed, RunFinished, RunStarted)
from lpc_engine.runs.reader import RunReader

EPOCH_KEYS = ("epoch", "loss", "ce", "penalty", "gamma", "lr", "train_acc", "test_acc",
              "latent_norm_mean", "latent_norm_cov", "seconds", "samples_per_s", "gamma_scheduled")


@dataclass
class RunHistory:
    """Everything a run has told so far; `version` grows with each change so
    views redraw only when something new arrived."""

    name: str = ""
    run_dir: str = ""
    config: dict[str, Any] = field(default_factory=dict)
    epochs: int = 0  # planned
    start_epoch: int = 1
    device: str = ""
    rows: list[dict[str, float]] = field(default_factory=list)
    metrics: dict[str, float] = field(default_factory=dict)
    metrics_epoch: int = 0
    metric_rows: list[dict[str, Any]] = field(default_factory=list)  # every MetricsComputed
    latents: LatentSample | None = None
    robustness: dict[str, Any] = field(default_factory=dict)
    alerts: list[Alert] = field(default_factory=list)
    status: str = "idle"  # idle | running | paused | finished | stopped | diverged | error
    error: str = ""
    summary: dict[str, Any] = field(default_factory=dict)
    version: int = 0

    def apply(self, event: Event) -> None:
        """Fold one engine event into the history."""
        self.version += 1
        if isinstance(event, EpochEnd):
            self.rows.append({k: getattr(event, k) for k in EPOCH_KEYS})
        elif isinstance(event, LatentSample):
            self.latents = event
        elif isinstance(event, MetricsComputed):
            self.metrics, self.metrics_epoch = dict(event.metrics), event.epoch
            self.metric_rows.append({"epoch": event.epoch, **event.metrics})
        elif isinstance(event, RobustnessComputed):
            self.robustness = dict(event.table)
        elif isinstance(event, Alert):
            self.alerts.append(event)
        elif isinstance(event, RunStarted):
            self._started(event)
        elif isinstance(event, (RunFinished, RunFailed)):
            self.status, self.summary = event.status, dict(event.summary)
            self.error = getattr(event, "error", "")

    def _started(self, event: RunStarted) -> None:
        self.run_dir, self.config, self.device = event.run_dir, dict(event.config), event.device
        self.epochs, self.start_epoch, self.status = event.epochs, event.start_epoch, "running"
        self.name = Path(event.run_dir).name if event.run_dir else self.name
        # A resumed run's earlier rows come from disk: keep those before the restart.
        self.rows = [r for r in self.rows if r["epoch"] < event.start_epoch]

    @property
    def last(self) -> dict[str, float]:
        return self.rows[-1] if self.rows else {}

    @property
    def epoch(self) -> int:
        return int(self.last.get("epoch", 0))

    def series(self, key: str) -> tuple[list[float], list[float]]:
        """(epochs, values) of an epoch-row key, skipping non-finite values."""
        pairs = [(r["epoch"], r[key]) for r in self.rows
                 if isinstance(r.get(key), (int, float)) and math.isfinite(r[key])]
        return [p[0] for p in pairs], [p[1] for p in pairs]

    def eta_seconds(self) -> float | None:
        """Seconds left at the mean pace of this session's epochs."""
        done = [r["seconds"] for r in self.rows if r["epoch"] >= self.start_epoch and r.get("seconds")]
        if not done or not self.epochs:
            return None
        return (self.epochs - self.epoch) * sum(done) / len(done)


def history_from_disk(run_dir: str | Path) -> RunHistory:
    """A saved run, rebuilt from config.json, events.jsonl and summary.json."""
    run = RunReader(run_dir)
    h = RunHistory(name=Path(run_dir).name, run_dir=str(run_dir))
    h.config = run.config() if run.exists() else {}
    h.epochs = int(h.config.get("epochs", 0))
    for event in run.events():
        if isinstance(event, (EpochEnd, MetricsComputed, RobustnessComputed, Alert)):
            h.apply(event)
    h.latents = run.latent_sample()  # the last measured epoch's, for the nodes pane and the codebook
    h.summary = run.summary() or {}
    h.status = h.summary.get("status", "incomplete")
    h.version = 1
    return h
