"""What training tells the world: frozen event dataclasses.

`train()` yields these; the run store writes each as one JSON line with an
"event" key (DESIGN.md, run directory contract), and the run reader
(runs/reader.py) turns the lines back into them with `from_json`; the CLI
and the TUI render them. Events that carry arrays (LatentSample) are not
written to events.jsonl but to files of their own (runs/latents.py). Each kind is named here and nowhere else: other
modules say `EpochEnd.kind`, never "epoch".
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from typing import Any, ClassVar


@dataclass(frozen=True)
class Event:
    kind: ClassVar[str] = "event"
    persist: ClassVar[bool] = True  # written to events.jsonl

    def to_json(self) -> dict[str, Any]:
        return {"event": self.kind, **dataclasses.asdict(self)}


@dataclass(frozen=True)
class RunStarted(Event):
    kind: ClassVar[str] = "started"
    run_dir: str  # "" when the run is not stored
    device: str
    start_epoch: int  # first epoch this session trains (1, or after resume)
    epochs: int
    num_params: int
    num_train: int
    num_test: int
    config: dict[str, Any] = field(default_factory=dict)
    processes: int = 1  # processes training the run together (lpc run --nproc)


@dataclass(frozen=True)
class EpochEnd(Event):
    kind: ClassVar[str] = "epoch"
    epoch: int
    loss: float  # mean over the epoch's batches: ce + penalty (+ supcon)
    ce: float  # classification term (CE, or the margin loss of ArcFace/CosFace)
    penalty: float  # gamma * latent penalty (eq. 1), 0 for presets without it
    gamma: float  # the gamma this epoch used: the schedule's, capped by `hold` and the governor
    lr: float  # backbone LR this epoch (the classifier keeps its own LR)
    train_acc: float  # on this epoch's (augmented) training batches
    test_acc: float  # clean test set; NaN on epochs without evaluation
    latent_norm_mean: float  # mean ||z|| over the epoch's training batches
    latent_norm_cov: float  # std / mean of ||z||
    seconds: float  # wall time of the epoch, evaluation included
    samples_per_s: float
    gamma_scheduled: float = float("nan")  # the schedule's gamma (NaN in rows of older runs)


@dataclass(frozen=True)
class LatentSample(Event):
    kind: ClassVar[str] = "latents"
    persist: ClassVar[bool] = False
    epoch: int
    z: Any  # numpy (n, d) clean training latents
    y: Any  # numpy (n,) labels
    node_score: tuple[float, ...] = ()  # per node: GMM mean log-likelihood (eq. D1 summand) on z
    node_peak_distance: tuple[float, ...] = ()  # per node: eq. D3 summand on z
    # per node, the kept 2-component fit on z (standardised units; component 0 the heavier)
    node_weights: tuple[tuple[float, float], ...] = ()
    node_means: tuple[tuple[float, float], ...] = ()
    node_stds: tuple[tuple[float, float], ...] = ()
    classes: tuple[int, ...] = ()  # labels of the codebook rows, ascending
    codes: tuple[tuple[int, ...], ...] = ()  # per class: sign (+1/-1) of its mean per node, all of z


@dataclass(frozen=True)
class MetricsComputed(Event):
    kind: ClassVar[str] = "metrics"
    epoch: int
    metrics: dict[str, float]


@dataclass(frozen=True)
class RobustnessComputed(Event):
    kind: ClassVar[str] = "robustness"
    epoch: int
    table: dict[str, float]


@dataclass(frozen=True)
class CheckpointSaved(Event):
    kind: ClassVar[str] = "checkpoint"
    epoch: int
    path: str


@dataclass(frozen=True)
class Alert(Event):
    kind: ClassVar[str] = "alert"
    epoch: int
    code: str  # "non_finite_loss" | "merge_at_origin" | ...
    message: str
    level: str = "warning"  # "warning" | "error"


@dataclass(frozen=True)
class RunFinished(Event):
    kind: ClassVar[str] = "finished"
    epoch: int  # last completed epoch
    status: str  # "finished" | "stopped"
    summary: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class RunFailed(Event):
    kind: ClassVar[str] = "failed"
    epoch: int  # last completed epoch
    status: str  # "diverged" | "error"
    error: str
    summary: dict[str, Any] = field(default_factory=dict)


KINDS: dict[str, type[Event]] = {cls.kind: cls for cls in (
    RunStarted, EpochEnd, LatentSample, MetricsComputed, RobustnessComputed, CheckpointSaved,
    Alert, RunFinished, RunFailed)}
# A field missing from an older run's row, by its declared type.
_ABSENT = {"float": math.nan, "int": 0, "str": "", "dict[str, Any]": {}, "dict[str, float]": {}}


def from_json(row: dict[str, Any]) -> Event | None:
    """The event a row of events.jsonl records (None for a kind this version
    does not know). JSON null stands for a non-finite float (the store
    writes strict JSON) and becomes NaN again; a field the row lacks takes
    its default, or an empty value of its type."""
    cls = KINDS.get(row.get("event"))  # type: ignore[arg-type]
    if cls is None:
        return None
    values = {}
    for f in dataclasses.fields(cls):
        value = row.get(f.name)
        if value is None and f.type == "float":
            value = math.nan
        elif value is None:
            has_default = f.default is not dataclasses.MISSING or f.default_factory is not dataclasses.MISSING
            if has_default:
                continue
            value = _ABSENT.get(f.type)
        elif f.type == "float" and isinstance(value, (int, float)):
            value = float(value)
        values[f.name] = value
    return cls(**values)
