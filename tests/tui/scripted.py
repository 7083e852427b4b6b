"""A scripted engine: the same events `train()` yields, made up, with no
torch in the loop, so UI tests are fast and exactly repeatable (DESIGN.md
style 10). `ScriptedTrain` honours pause and stop like the engine."""

from __future__ import annotations

import asyncio
import functools
import math
import os
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from lpc_engine import build_config
from lpc_engine.config import to_dict
from lpc_engine.events import (Alert, CheckpointSaved, EpochEnd, Event, LatentSample, MetricsComputed,
                               RobustnessComputed, RunFinished, RunStarted)
from lpc_engine.runs.latents import write_latent_sample
from lpc_engine.runs.store import RunStore

D, CLASSES = 8, 4


async def until(pilot, condition, timeout: float = 20.0) -> None:
    """Let the app run until `condition()` holds (events come from a thread)."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("timed out waiting for the app")
        await pilot.pause(0.02)


def aio(test):
    """Run an async test function on a fresh event loop (no plugin needed)."""
    @functools.wraps(test)
    def run(*args, **kwargs):
        return asyncio.run(test(*args, **kwargs))
    return run


def epoch_event(epoch: int, epochs: int) -> EpochEnd:
    """A plausible LPC epoch: gamma x1.2, the latent norm shrinking, accuracy rising."""
    gamma = min(10.0, 0.01 * 1.2 ** (epoch - 1))
    ce = 1.5 * math.exp(-epoch / 3) + 0.05
    norm = 4.0 / (1 + 0.3 * epoch)
    acc = 1 - 0.7 * math.exp(-epoch / 2)
    return EpochEnd(epoch=epoch, loss=ce + gamma * 0.01, ce=ce, penalty=gamma * 0.01, gamma=gamma,
                    lr=3e-3, train_acc=acc, test_acc=acc - 0.02, latent_norm_mean=norm,
                    latent_norm_cov=0.3 / epoch, seconds=0.5, samples_per_s=2000.0)


def latent_event(epoch: int) -> LatentSample:
    """Two peaks per node at +-1 (a collapsed code per class), fixed noise."""
    rng = np.random.default_rng(epoch)
    codes = np.array([[1 if (c >> (i % 2) + i // 4) & 1 else -1 for i in range(D)] for c in range(CLASSES)])
    y = np.repeat(np.arange(CLASSES), 50)
    z = codes[y] + rng.normal(0, 0.1, (len(y), D))
    return LatentSample(epoch=epoch, z=z, y=y, node_score=tuple(0.1 * i - 0.3 for i in range(D)),
                        node_peak_distance=tuple(2.0 + 1.5 * i for i in range(D)),
                        classes=tuple(range(CLASSES)), codes=tuple(tuple(int(v) for v in c) for c in codes))


METRICS = {"separation_ratio": 12.5, "sigma_w": 3.2e-6, "sigma_w_trace_ratio": 0.021, "norm_cov": 0.05,
           "entropy_per_dim": -3.1, "nc1": 0.04, "equinorm": 0.06, "equiangularity": 0.05,
           "self_duality": 0.03, "ncc_mismatch": 0.001, "gmm_score_mean": 0.12, "gmm_score_min": -0.4,
           "gmm_peak_distance_mean": 9.8, "gmm_peak_distance_min": 5.1, "abs_cov": 0.2,
           "codebook_distinct": 4.0}
ROBUSTNESS = {"robustness_mean": 0.31, "robustness_median": 0.29, "robustness_correct_mean": 0.32,
              "deepfool_converged": 1.0, "test_acc": 0.97, "samples": 200}


@dataclass
class ScriptedTrain:
    """Call it like `train(cfg, control, run_dir=..., resume=..., overwrite=...)`.

    epochs: how many epochs it plays; hold_after: stop playing after that
    epoch until `release` is set (a run caught mid-way, for snapshots);
    alert_at: emit a merge alert there and apply the config's policy;
    fail_at: raise RuntimeError there (an engine bug in the worker).
    """

    epochs: int = 6
    hold_after: int | None = None
    alert_at: int | None = None
    fail_at: int | None = None
    epoch_seconds: float = 0.0  # pacing, so a key can land in mid-run
    release: threading.Event = field(default_factory=threading.Event)
    played: list[Event] = field(default_factory=list)

    def __call__(self, cfg, control, run_dir=None, resume=False, overwrite=False):
        for event in self._events(cfg, control, run_dir):
            self.played.append(event)
            yield event

    def _events(self, cfg, control, run_dir):
        yield RunStarted(run_dir=str(run_dir or ""), device="cpu", start_epoch=1, epochs=self.epochs,
                         num_params=1234, num_train=200, num_test=50, config=to_dict(cfg))
        for epoch in range(1, self.epochs + 1):
            while control.pause.is_set() and not control.stop.is_set():
                control.stop.wait(0.01)
            if control.stop.is_set():
                yield CheckpointSaved(epoch=epoch - 1, path="ckpt")
                yield RunFinished(epoch=epoch - 1, status="stopped", summary=summary(epoch - 1, "stopped"))
                return
            control.stop.wait(self.epoch_seconds)
            if epoch == self.fail_at:
                raise RuntimeError("scripted failure in the worker")
            yield epoch_event(epoch, self.epochs)
            if epoch == self.alert_at:
                yield from _merge_alert(cfg, control, epoch)
            if epoch % 3 == 0 or epoch == self.epochs:
                yield latent_event(epoch)
                yield MetricsComputed(epoch=epoch, metrics=dict(METRICS))
            if epoch == self.hold_after:
                while not (self.release.is_set() or control.stop.is_set()):
                    self.release.wait(0.01)
        yield RobustnessComputed(epoch=self.epochs, table=dict(ROBUSTNESS))
        yield RunFinished(epoch=self.epochs, status="finished", summary=summary(self.epochs, "finished"))


def _merge_alert(cfg, control, epoch):
    if cfg.gamma.merge_policy == "pause":
        control.pause.set()
    yield Alert(epoch=epoch, code="merge_at_origin",
                message=f"classes are merging at the origin at epoch {epoch}")


def summary(epoch: int, status: str) -> dict:
    return {"status": status, "epochs_done": epoch, "test_acc": 0.97, "metrics": dict(METRICS),
            "robustness": dict(ROBUSTNESS) if status == "finished" else {}}


def write_saved_run(runs_dir: Path, name: str, epochs: int, scale: float = 1.0, status: str = "finished",
                    mtime: float = 1.7e9) -> Path:
    """A run directory as the engine leaves it, from scripted rows; `mtime`
    fixes its place in the runs list (newest first)."""
    cfg = build_config(flags={"dataset": "synthetic", "epochs": epochs})
    store = RunStore(runs_dir / name)
    store.create(to_dict(cfg), "")
    for epoch in range(1, epochs + 1):
        row = epoch_event(epoch, epochs).to_json()
        row["test_acc"] *= scale
        store.append(row)
    metrics = {**METRICS, "separation_ratio": METRICS["separation_ratio"] * scale}
    store.append(MetricsComputed(epoch=epochs, metrics=metrics).to_json())
    write_latent_sample(store.dir, latent_event(epochs))  # what the nodes pane draws, on disk
    store.release()  # its writer is done: the run is not `running`
    store.write_summary({**summary(epochs, status), "metrics": metrics,
                         "test_acc": 0.95 * scale, "preset": "lpc", "dataset": "synthetic"})
    os.utime(runs_dir / name, (mtime, mtime))
    return runs_dir / name
