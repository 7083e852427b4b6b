"""What each of our events becomes in an experiment tracker: a pure mapping,
shared by live logging (`lpc run --log-to`, sink.py) and `lpc export`
(export.py), so that a run looks the same in TensorBoard, W&B and MLflow
however it got there.

Records are tracker-neutral; each backend (tensorboard.py, wandb.py,
mlflow.py) writes the kinds it has a place for and ignores the rest.
Steps are epochs (1-based, as in events.jsonl), so a curve drawn from a
tracker lines up with `lpc runs` and the TUI.
"""

from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass, field
from typing import Any, Union

import numpy as np

from lpc_engine.events import (Alert, EpochEnd, Event, LatentSample, MetricsComputed, RobustnessComputed,
                               RunFailed, RunFinished, RunStarted)

# Tag prefixes: TensorBoard and W&B group a dashboard by the part before "/".
METRICS_PREFIX = "metrics/"
ROBUSTNESS_PREFIX = "robustness/"
LATENT_PREFIX = "latent/node_"
CONFIG_TAG = "config"
ALERTS_TAG = "alerts"
SUMMARY_TAG = "summary"


@dataclass(frozen=True)
class Scalar:
    tag: str
    value: float
    step: int


@dataclass(frozen=True)
class Histogram:
    tag: str
    values: np.ndarray  # 1-D float32, finite values only
    step: int


@dataclass(frozen=True)
class ConfigRecord:
    config: dict[str, Any]  # nested, as config.json holds it
    params: dict[str, Any]  # {"gamma.gamma_init": 0.01, ...}: one level, dotted keys
    text: str  # the config as indented JSON (config.json's layout)
    start_epoch: int  # first epoch of this session (> 1 after a resume)


@dataclass(frozen=True)
class Note:
    tag: str
    text: str
    step: int


@dataclass(frozen=True)
class Final:
    status: str  # "finished" | "stopped" | "diverged" | "error"
    epoch: int  # last completed epoch
    failed: bool
    summary: dict[str, Any] = field(default_factory=dict)
    error: str = ""


Record = Union[Scalar, Histogram, ConfigRecord, Note, Final]


def records(event: Event) -> list[Record]:
    """The tracker records of one event (none for the kinds trackers have no
    place for: CheckpointSaved, and kinds added later)."""
    if isinstance(event, EpochEnd):
        return _epoch_scalars(event)
    if isinstance(event, MetricsComputed):
        return _scalars(METRICS_PREFIX, event.metrics, event.epoch)
    if isinstance(event, RobustnessComputed):
        return _scalars(ROBUSTNESS_PREFIX, event.table, event.epoch)
    if isinstance(event, LatentSample):
        return _histograms(event)
    if isinstance(event, RunStarted):
        return [config_record(event.config, event.start_epoch)]
    if isinstance(event, Alert):
        return [Note(ALERTS_TAG, f"{event.level} {event.code} (epoch {event.epoch}): {event.message}",
                     event.epoch)]
    if isinstance(event, (RunFinished, RunFailed)):
        return [Final(status=event.status, epoch=event.epoch, failed=isinstance(event, RunFailed),
                      summary=dict(event.summary), error=getattr(event, "error", ""))]
    return []


def finite_number(value: Any) -> float | None:
    """`value` as a float if it is a finite real number (not a bool), else None:
    NaN marks "not measured this epoch" (test_acc between evaluations), and a
    tracker would draw it as a gap or a spike."""
    if isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)):
        return None
    value = float(value)
    return value if math.isfinite(value) else None


def _epoch_scalars(row: EpochEnd) -> list[Record]:
    # Every numeric field by its own name (loss, test_acc, gamma, ...): the
    # names of events.jsonl's epoch rows (DESIGN.md, run directory contract).
    values = {f.name: getattr(row, f.name) for f in dataclasses.fields(row) if f.name != "epoch"}
    return _scalars("", values, row.epoch)


def _scalars(prefix: str, values: dict[str, Any], step: int) -> list[Record]:
    out: list[Record] = []
    for name, value in values.items():
        number = finite_number(value)
        if number is not None:
            out.append(Scalar(prefix + name, number, step))
    return out


def _histograms(sample: LatentSample) -> list[Record]:
    """One histogram per latent node j of z[:, j]: the paper's Fig. 2 view,
    where collapse shows as each node's values gathering into two peaks
    (appendix D). Non-finite values (a diverging run) are left out: the
    trackers' binning cannot place them."""
    z = np.asarray(sample.z, dtype=np.float32)
    if z.ndim != 2:
        return []
    out: list[Record] = []
    for j in range(z.shape[1]):
        column = z[:, j]
        column = column[np.isfinite(column)]
        if column.size:
            out.append(Histogram(f"{LATENT_PREFIX}{j}", column, sample.epoch))
    return out


def config_record(config: dict[str, Any], start_epoch: int = 1) -> ConfigRecord:
    return ConfigRecord(config=config, params=flat_params(config), text=config_text(config),
                        start_epoch=start_epoch)


def flat_params(config: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """The nested config as one level, dotted keys ("gamma.gamma_init"): the
    form the trackers' parameter tables take. Lists become their JSON text.
    Generic on purpose: a config.json of an older or newer version maps too."""
    flat: dict[str, Any] = {}
    for key, value in config.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            flat.update(flat_params(value, name + "."))
        elif isinstance(value, (list, tuple)):
            flat[name] = json.dumps(list(value))
        else:
            flat[name] = value
    return flat


def config_text(config: dict[str, Any]) -> str:
    return json.dumps(config, indent=2, sort_keys=False, default=str)


def summary_scalars(summary: dict[str, Any], sep: str = "/", prefix: str = "") -> dict[str, float]:
    """The finite numbers of a run's summary (summary.json), one level
    ("metrics/sigma_w", the tags the metrics have all along): what a
    tracker's run summary can hold."""
    out: dict[str, float] = {}
    for key, value in summary.items():
        if isinstance(value, dict):
            out.update(summary_scalars(value, sep, f"{prefix}{key}{sep}"))
        elif (number := finite_number(value)) is not None:
            out[f"{prefix}{key}"] = number
    return out
