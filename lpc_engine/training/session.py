"""Everything one training run holds while it trains, built once by `open_session`.

`train()` (train.py) drives a Session epoch by epoch; the Session owns the
live objects, the run store, and what a checkpoint must capture.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from lpc_engine.training import checkpoint
from lpc_engine.runs.checkpoint_files import set_aside
from lpc_engine.training.alerts import MergeWatch
from lpc_engine.config import RunConfig, to_dict
from lpc_engine.config_io import dumps_toml
from lpc_engine.data.datasets import TensorData, load_data
from lpc_engine.parallel.distributed import World
from lpc_engine.training.epoch import (EpochProgress, accuracy, epoch_scalars, global_progress, local_progress,
                    start_epoch, train_steps)
from lpc_engine.errors import UsageError
from lpc_engine.events import Alert, CheckpointSaved, EpochEnd, Event, MetricsComputed, RobustnessComputed
from lpc_engine.training.execution import StepForward, flush_denormals, prepare_forward
from lpc_engine.model.network import LpcModel, build_model
from lpc_engine.training.objective import objective_for_epoch
from lpc_engine.presets import Preset, get_preset
from lpc_engine.training.governor import governed_gamma
from lpc_engine.training.schedules import gamma_at, lr_at
from lpc_engine.runs.reader import RunReader
from lpc_engine.runs.store import RunStore


def pick_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise UsageError(f"device: {name} requested but no CUDA GPU is visible")
    return device


@dataclass
class Session:
    cfg: RunConfig
    preset: Preset
    device: torch.device
    data: TensorData
    model: LpcModel  # the plain module: checkpoints, evaluation, metrics, DeepFool
    forward: StepForward  # what the training steps call (bf16, compiled: execution.py)
    optimizer: torch.optim.Optimizer
    generator: torch.Generator  # draws batch orders and augmentations
    store: RunStore | None  # None: not stored, or not rank 0 of several processes
    watch: MergeWatch
    world: World = World()  # the processes training this run (distributed.py)
    start: int = 1  # first epoch to train
    gamma_hold: float | None = None  # cap set by the `hold` merge policy
    progress: EpochProgress | None = None  # an epoch in progress (after a mid-epoch resume)
    rows: list[dict[str, Any]] = field(default_factory=list)  # epoch rows so far
    metrics: dict[str, float] = field(default_factory=dict)  # the latest MetricsComputed
    robustness: dict[str, Any] = field(default_factory=dict)  # the final RobustnessComputed
    notices: list[Event] = field(default_factory=list)  # alerts of the set-up, sent after RunStarted
    trackers: Any = None  # LiveTrackers of the run's log_to (training/tracking.py), rank 0 only

    def emit(self, event: Event) -> Event:
        """Record `event` in the run store (if any) and hand it back."""
        if self.store is not None and event.persist:
            self.store.append(event.to_json())
        return event

    def gammas(self, epoch: int) -> tuple[float, float]:
        """(the schedule's gamma, the gamma `epoch` uses): the `hold` policy's
        cap and the governor (governor.py) apply to the second."""
        scheduled = gamma_at(epoch, self.cfg.gamma, self.cfg.epochs)
        held = scheduled if self.gamma_hold is None else min(scheduled, self.gamma_hold)
        return scheduled, governed_gamma(held, self.model.classifier.weight, self.cfg.gamma)

    def train_epoch(self, epoch: int, stop=None, pause=None,
                    deadline: float | None = None) -> EpochEnd | None:
        """Train and evaluate `epoch`; None if stopped, or if time.monotonic()
        passed `deadline`, before its end (call again to go on)."""
        cfg, (scheduled, gamma) = self.cfg, self.gammas(epoch)
        lr = lr_at(epoch, cfg.optim, cfg.epochs)
        self.optimizer.param_groups[0]["lr"] = lr  # group 1, the classifier, keeps its own LR
        obj = objective_for_epoch(cfg, self.preset, epoch, gamma)
        self.progress = self.progress or start_epoch(self.data, self.generator, cfg.data.augment,
                                                     self.world)
        began = time.perf_counter()
        done = train_steps(self.model, self.optimizer, self.data, self.progress, obj,
                           cfg.data.batch_size, cfg.data.augment, self.generator, stop, pause,
                           deadline, self.forward, self.world, cfg.loader_workers)
        self.progress.seconds += time.perf_counter() - began
        if not done:
            return None
        train_seconds, eval_began = self.progress.seconds, time.perf_counter()
        test_acc = float("nan")
        if (epoch % cfg.eval_every == 0 or epoch == cfg.epochs) and self.world.is_main:
            test_acc = accuracy(self.model, self.data.x_test, self.data.y_test)
        row = EpochEnd(epoch=epoch, gamma=gamma, gamma_scheduled=scheduled, lr=lr, test_acc=test_acc,
                       seconds=train_seconds + time.perf_counter() - eval_began,
                       samples_per_s=self.progress.perm.numel() / max(train_seconds, 1e-9),
                       **epoch_scalars(self.progress, self.world))
        self.progress = None
        self.rows.append(self.emit(row).to_json())
        return row

    def saw_nonfinite(self) -> bool:
        """True if a step of the epoch in progress had a non-finite loss (one
        host sync: call it where the loop stops anyway, never per step)."""
        return self.progress is not None and bool(self.progress.nonfinite.item())

    def save(self, epoch: int) -> Event | None:
        """Checkpoint after `epoch` (plus the epoch in progress, if any).
        On several processes every one calls it; rank 0 writes."""
        progress = None if self.progress is None else global_progress(self.progress, self.world)
        if self.store is None:
            return None
        snap = checkpoint.capture(self.model, self.optimizer, self.generator, epoch,
                                  self.gammas(max(epoch, 1))[1], self.gamma_hold, self.watch.state(),
                                  progress, to_dict(self.cfg))
        step = self.progress.step if self.progress else 0
        path = self.store.save_checkpoint(snap, epoch, step)
        return self.emit(CheckpointSaved(epoch=epoch, path=str(path)))


@dataclass
class ResumePoint:
    """Where a resumed run starts: its newest checkpoint that verifies."""

    state: dict[str, Any] | None  # None: no checkpoint yet, so the run restarts at epoch 1
    path: Path | None
    skipped: list[tuple[Path, str]] = field(default_factory=list)  # newer ones found corrupt, why


def open_session(cfg: RunConfig, run_dir: str | Path | None, resume: ResumePoint | None,
                 overwrite: bool, world: World = World()) -> Session:
    """Load data, build model and optimizer, then restore `resume` or create the
    run directory (rank 0 alone, on several processes). Bad input raises
    UsageError before anything is written."""
    flush_denormals()  # tiny z at high gamma: denormals cost 25-30x on CPUs
    if cfg.data.batch_size < 2 * world.size:  # batch norm needs 2 samples in each part
        raise UsageError(f"batch_size: {world.size} processes need batches of at least "
                         f"{2 * world.size} samples, got {cfg.data.batch_size}")
    device = world.place(pick_device(cfg.device))
    preset = get_preset(cfg.model.preset)
    data = _load(cfg, device, world)
    torch.manual_seed(cfg.seed)  # the same initial weights on every process
    model = build_model(cfg.model.backbone, preset.head, data.input_shape, data.num_classes,
                        cfg.model.latent_dim, cfg.model.classifier_bias).to(device)
    forward = prepare_forward(model, device, cfg.precision, cfg.compile, world)
    store = RunStore(run_dir) if run_dir is not None and world.is_main else None
    session = Session(cfg, preset, device, data, model, forward, _optimizer(model, cfg),
                      torch.Generator(device=device).manual_seed(cfg.seed), store,
                      MergeWatch(data.num_classes), world)
    try:
        if resume is not None:
            _restore(session, resume)
        elif store is not None:
            store.create(to_dict(cfg), dumps_toml(cfg), overwrite=overwrite)
    except BaseException:
        if store is not None:  # nothing trained: let go of the run as it was
            store.release()
        raise
    if store is not None and store.notice:
        session.notices.append(Alert(epoch=0, code="lock_taken_over", message=store.notice))
    return session


def _load(cfg: RunConfig, device: torch.device, world: World) -> TensorData:
    """The dataset; on several processes rank 0 first, so that a download
    happens once, and then the others."""
    if not world.is_main:
        world.barrier()
    data = load_data(cfg.data.dataset, cfg.data.data_dir or None, cfg.data.download, device,
                     image_size=cfg.data.image_size, placement=cfg.data_placement)
    if world.is_main:
        world.barrier()
    return data


def _restore(s: Session, point: ResumePoint) -> None:
    """Continue from `point`: set corrupt checkpoints aside (never silently),
    drop the event rows that will be redone, and reload what they said.
    Only rank 0 touches the run store; every process loads the state."""
    if point.state is not None:
        progress = checkpoint.restore(point.state, s.model, s.optimizer, s.generator)
        s.progress = None if progress is None else local_progress(progress, s.world)
        s.gamma_hold = point.state["gamma_hold"]
        s.start, s.watch = point.state["epoch"] + 1, MergeWatch(**point.state["watch"])
    if s.store is not None:
        _restore_store(s, point)


def _restore_store(s: Session, point: ResumePoint) -> None:
    store, epoch = s.store, s.start - 1
    store.take_lock()  # before the first write: a run being trained elsewhere is left alone
    store.clean_debris()
    for path, why in point.skipped:
        s.notices.append(Alert(epoch=0, code="checkpoint_corrupt", message=(
            f"{why}; set aside as {path.name}.corrupt, resuming from "
            f"{point.path.name if point.path else 'the start'}")))
    set_aside([path for path, _ in point.skipped])
    if point.state is None:  # killed before its first checkpoint: redo it all
        s.notices.append(Alert(epoch=0, code="no_checkpoint",
                               message="no checkpoint yet: the run restarts at epoch 1"))
    store.truncate_events(epoch)
    events = RunReader(store.dir).events()  # read once, after the truncation
    s.rows = [e.to_json() for e in events if isinstance(e, EpochEnd)]
    measured = [e for e in events if isinstance(e, MetricsComputed)]
    s.metrics = dict(measured[-1].metrics) if measured else {}
    # The final attack, if it was done for this run length: not redone.
    attacks = [e for e in events if isinstance(e, RobustnessComputed) and e.epoch == s.cfg.epochs]
    s.robustness = dict(attacks[-1].table) if attacks else {}


def _optimizer(model: LpcModel, cfg: RunConfig) -> torch.optim.Optimizer:
    """AdamW (app. C); the last classifier in group 1, outside the LR schedule,
    with its own LR and weight decay if given (classifier_lr, classifier_weight_decay).
    Fused: its found_inf skip guards the weights from a non-finite loss
    (epoch.py), and it was 20% faster than foreach on a digits step."""
    o = cfg.optim
    head = {id(p) for p in model.classifier.parameters()}
    body = [p for p in model.parameters() if id(p) not in head]
    decay = o.weight_decay if o.classifier_weight_decay < 0 else o.classifier_weight_decay
    classifier = {"params": list(model.classifier.parameters()), "lr": o.classifier_lr or o.lr,
                  "weight_decay": decay}
    return torch.optim.AdamW([{"params": body}, classifier], lr=o.lr, weight_decay=o.weight_decay,
                             fused=True)
