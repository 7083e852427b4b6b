"""`train(cfg, control)`: the one training loop, a generator of events.

Readable in one sitting: set up (data on the device, model, AdamW with the
last classifier in its own param group), then per epoch: set gamma and the
LR from their schedules, run the steps, evaluate, emit `EpochEnd`, watch
for divergence and for classes merging at the origin, checkpoint.
A stop request is honoured between steps and leaves a checkpoint from which
`resume=True` continues exactly, even in mid-epoch.
"""

from __future__ import annotations

import dataclasses
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import torch

from . import checkpoint
from .alerts import MergeWatch
from .config import RunConfig, to_dict
from .config_io import config_from_dict, dumps_toml, resolve
from .data import load_data
from .epoch import accuracy, epoch_scalars, start_epoch, train_steps
from .errors import UsageError
from .events import (Alert, CheckpointSaved, EpochEnd, Event, RunFailed, RunFinished,
                     RunStarted)
from .models import build_model
from .objective import objective_for_epoch
from .presets import get_preset
from .schedules import gamma_at, lr_at
from .store import RunStore, load_checkpoint
from .summary import make_summary


@dataclass
class Control:
    """Signals from the outside, checked between steps."""

    stop: threading.Event = field(default_factory=threading.Event)
    pause: threading.Event = field(default_factory=threading.Event)  # set = paused


def pick_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise UsageError(f"device: {name} requested but no CUDA GPU is visible")
    return device


def train(cfg: RunConfig, control: Control | None = None, run_dir: str | Path | None = None,
          resume: bool = False, overwrite: bool = False) -> Iterator[Event]:
    """Train `cfg`, yielding events; with `run_dir`, record them in the run store.

    Bad input raises UsageError before anything is written. With resume=True
    the run in `run_dir` continues from its newest checkpoint; `cfg` may only
    differ from the saved config in `epochs` (to extend a run).
    """
    control = control or Control()
    store = RunStore(run_dir) if run_dir is not None else None
    state = None
    if resume:
        cfg, state = _resume_point(cfg, store)
    cfg = resolve(cfg)
    torch.set_flush_denormal(True)  # tiny z at high gamma: denormals cost 25-30x on CPUs
    device = pick_device(cfg.device)
    preset = get_preset(cfg.model.preset)
    data = load_data(cfg.data.dataset, cfg.data.data_dir or None, cfg.data.download, device)
    torch.manual_seed(cfg.seed)
    model = build_model(cfg.model.backbone, preset.head, data.input_shape, data.num_classes,
                        cfg.model.latent_dim, cfg.model.classifier_bias).to(device)
    optimizer = _optimizer(model, cfg)
    generator = torch.Generator(device=device).manual_seed(cfg.seed)
    watch = MergeWatch(data.num_classes)
    start, gamma_hold, progress = 1, None, None
    if state is not None:
        progress = checkpoint.restore(state, model, optimizer, generator)
        start, gamma_hold = state["epoch"] + 1, state["gamma_hold"]
        watch = MergeWatch(**state["watch"])
        store.truncate_events(state["epoch"])
    elif store is not None:
        store.create(to_dict(cfg), dumps_toml(cfg), overwrite=overwrite)

    def emit(event: Event) -> Event:
        if store is not None and event.persist:
            store.append(event.to_json())
        return event

    def save(epoch: int, gamma: float, prog=None) -> Event | None:
        if store is None:
            return None
        snap = checkpoint.capture(model, optimizer, generator, epoch, gamma, gamma_hold,
                                  watch.state(), prog, to_dict(cfg))
        path = store.save_checkpoint(snap, epoch, prog.step if prog else 0)
        return emit(CheckpointSaved(epoch=epoch, path=str(path)))

    yield emit(RunStarted(run_dir=str(run_dir or ""), device=str(device), start_epoch=start,
                          epochs=cfg.epochs, num_params=sum(p.numel() for p in model.parameters()),
                          num_train=len(data.y_train), num_test=len(data.y_test),
                          config=to_dict(cfg)))
    rows: list[dict] = [r for r in (store.read_events() if store and resume else [])
                        if r.get("event") == "epoch"]
    run_start = time.perf_counter()
    try:
        for epoch in range(start, cfg.epochs + 1):
            gamma = gamma_at(epoch, cfg.gamma, cfg.epochs)
            if gamma_hold is not None:
                gamma = min(gamma, gamma_hold)
            lr = lr_at(epoch, cfg.optim, cfg.epochs)
            optimizer.param_groups[0]["lr"] = lr  # the classifier (group 1) keeps cfg.optim.lr
            obj = objective_for_epoch(cfg, preset, epoch, gamma)
            progress = progress or start_epoch(data, generator)
            began = time.perf_counter()
            finished = train_steps(model, optimizer, data, progress, obj, cfg.data.batch_size,
                                   cfg.data.augment, generator, control.stop, control.pause)
            progress.seconds += time.perf_counter() - began
            if not finished:
                saved = save(epoch - 1, gamma, progress)
                if saved:
                    yield saved
                yield _end(store, cfg, rows, "stopped", epoch - 1, run_start)
                return
            train_seconds, eval_began = progress.seconds, time.perf_counter()
            scalars = epoch_scalars(progress.sums)
            test_acc = float("nan")
            if epoch % cfg.eval_every == 0 or epoch == cfg.epochs:
                test_acc = accuracy(model, data.x_test, data.y_test)
            seconds = train_seconds + time.perf_counter() - eval_began
            row = EpochEnd(epoch=epoch, gamma=gamma, lr=lr, test_acc=test_acc, seconds=seconds,
                           samples_per_s=progress.perm.numel() / max(train_seconds, 1e-9), **scalars)
            progress = None
            rows.append(emit(row).to_json())
            yield row
            if not torch.isfinite(torch.tensor(row.loss)):
                yield emit(Alert(epoch=epoch, code="non_finite_loss", level="error",
                                 message=f"loss is {row.loss} at epoch {epoch}; weights are no longer usable"))
                yield _end(store, cfg, rows, "diverged", epoch - 1, run_start)
                return
            if preset.penalty and watch.update(row.train_acc, row.latent_norm_mean):
                gamma_hold = _on_merge(cfg, control, gamma, gamma_hold)
                yield emit(Alert(epoch=epoch, code="merge_at_origin", message=_merge_message(cfg, row)))
            last = epoch == cfg.epochs
            if last or epoch % cfg.checkpoint_every == 0 or control.stop.is_set():
                saved = save(epoch, gamma)
                if saved:
                    yield saved
            if control.stop.is_set() and not last:
                yield _end(store, cfg, rows, "stopped", epoch, run_start)
                return
        yield _end(store, cfg, rows, "finished", cfg.epochs, run_start)
    finally:
        if store is not None:
            store.close()


def _optimizer(model: torch.nn.Module, cfg: RunConfig) -> torch.optim.Optimizer:
    """AdamW (app. C); the last classifier in group 1, outside the LR schedule."""
    head = {id(p) for p in model.classifier.parameters()}
    body = [p for p in model.parameters() if id(p) not in head]
    groups = [{"params": body}, {"params": list(model.classifier.parameters())}]
    return torch.optim.AdamW(groups, lr=cfg.optim.lr, weight_decay=cfg.optim.weight_decay)


def _resume_point(cfg: RunConfig, store: RunStore | None) -> tuple[RunConfig, dict]:
    """The saved config (with cfg's epochs) and the newest checkpoint's state."""
    if store is None or not store.exists():
        raise UsageError("resume: no run to resume (give --runs-dir and --name of an existing run)")
    saved = config_from_dict(store.read_config())
    path = store.latest_checkpoint()
    if path is None:
        raise UsageError(f"resume: {store.dir} has no checkpoint yet")
    state = load_checkpoint(path)
    epochs = max(cfg.epochs, state["epoch"])
    return dataclasses.replace(saved, epochs=epochs), state


def _on_merge(cfg: RunConfig, control: Control, gamma: float, hold: float | None) -> float | None:
    if cfg.gamma.merge_policy == "pause":
        control.pause.set()
    if cfg.gamma.merge_policy == "hold":
        return gamma if hold is None else min(hold, gamma)
    return hold


def _merge_message(cfg: RunConfig, row: EpochEnd) -> str:
    action = {"warn": "", "pause": " Paused.", "hold": f" Holding gamma at {row.gamma:.3g}."}
    return (f"classes are merging at the origin: train accuracy {row.train_acc:.1%}, "
            f"latent norm {row.latent_norm_mean:.3g} at gamma {row.gamma:.3g}."
            + action[cfg.gamma.merge_policy])


def _end(store: RunStore | None, cfg: RunConfig, rows: list[dict], status: str,
         epoch: int, run_start: float) -> Event:
    summary = make_summary(cfg, rows, status, time.perf_counter() - run_start)
    if status == "diverged":
        event = RunFailed(epoch=epoch, status=status, error="non-finite loss", summary=summary)
    else:
        event = RunFinished(epoch=epoch, status=status, summary=summary)
    if store is not None:
        store.append(event.to_json())
        store.write_summary(summary)
    return event
