"""BackgroundRun: train() on a worker thread with pause, resume, stop and join;
errors become a RunFailed event and the thread ends cleanly."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

import pytest

from lpc_engine import (BackgroundRun, CheckpointSaved, EpochEnd, RunFailed, RunFinished,
                        build_config, train)
from lpc_engine.runs.store import RunStore, load_checkpoint, read_events

TIMEOUT = 60.0  # generous: the machine may be shared


def synthetic(**flags):
    return build_config(None, {"dataset": "synthetic", "device": "cpu", **flags})


class Recorder:
    """on_event for BackgroundRun: keeps the events and wakes waiters."""

    def __init__(self) -> None:
        self.events: list = []
        self.threads: set[str] = set()
        self.changed = threading.Condition()
        self.hook = None  # called with each event, on the worker thread

    def __call__(self, event) -> None:
        self.threads.add(threading.current_thread().name)
        if self.hook:
            self.hook(event)
        with self.changed:
            self.events.append(event)
            self.changed.notify_all()

    def epochs(self) -> list[int]:
        return [e.epoch for e in list(self.events) if isinstance(e, EpochEnd)]

    def wait_for(self, predicate, timeout: float = TIMEOUT) -> None:
        with self.changed:
            assert self.changed.wait_for(predicate, timeout), f"timed out; events: {self.events[-3:]}"


@pytest.fixture
def no_thread_crash(monkeypatch):
    """Fails the test if an exception escapes a worker thread."""
    escaped = []
    monkeypatch.setattr(threading, "excepthook", lambda args: escaped.append(args.exc_value))
    yield
    assert escaped == []


def test_pause_halts_progress_and_resume_and_stop_work(tmp_path: Path, no_thread_crash) -> None:
    run_dir = tmp_path / "r"
    rec = Recorder()
    run = BackgroundRun(synthetic(epochs=10_000), rec, run_dir=run_dir)

    def pause_after_epoch_2(event) -> None:
        if isinstance(event, EpochEnd) and event.epoch == 2:
            run.pause()

    rec.hook = pause_after_epoch_2
    run.start()
    rec.wait_for(lambda: 2 in rec.epochs())
    assert run.paused and run.running
    time.sleep(0.5)  # a synthetic epoch takes ~20 ms: ~25 would have passed
    assert rec.epochs() == [1, 2]
    assert run.running and run.paused

    rec.hook = None
    run.resume()
    assert not run.paused
    rec.wait_for(lambda: len(rec.epochs()) >= 4)
    run.stop()
    assert run.join(TIMEOUT) and not run.running
    assert run.error is None
    end = run.last_event
    assert isinstance(end, RunFinished) and end.status == "stopped"
    assert rec.events[-1] is end
    assert rec.threads == {"lpc-train"}  # the callback runs on the worker thread
    epochs = rec.epochs()
    assert epochs == list(range(1, len(epochs) + 1))
    saved = [e for e in rec.events if isinstance(e, CheckpointSaved)]
    assert saved and Path(saved[-1].path).is_file()
    assert RunStore(run_dir).latest_checkpoint() is not None
    summary = json.loads((run_dir / "summary.json").read_text())
    assert summary["status"] == "stopped"
    assert summary["epochs_done"] == end.epoch == load_checkpoint(saved[-1].path)["epoch"]


def test_stop_while_paused_ends_the_run_with_a_checkpoint(tmp_path: Path, no_thread_crash,
                                                         helpers) -> None:
    """Paused before the first step of epoch 2, then stopped: the checkpoint
    holds that epoch's drawn order, and resuming reproduces a straight run."""
    run_dir = tmp_path / "r"
    rec = Recorder()
    cfg = synthetic(epochs=3)
    run = BackgroundRun(cfg, rec, run_dir=run_dir)
    rec.hook = lambda e: run.pause() if isinstance(e, EpochEnd) and e.epoch == 1 else None
    run.start()
    rec.wait_for(lambda: 1 in rec.epochs())
    time.sleep(0.2)
    run.stop()
    assert not run.paused
    assert run.join(TIMEOUT)
    assert isinstance(run.last_event, RunFinished) and run.last_event.status == "stopped"
    assert run.last_event.epoch == 1 and rec.epochs() == [1]
    assert RunStore(run_dir).latest_checkpoint() is not None

    rec2 = Recorder()
    again = BackgroundRun(cfg, rec2, run_dir=run_dir, resume=True)
    again.start()
    assert again.join(TIMEOUT)
    assert isinstance(again.last_event, RunFinished) and again.last_event.status == "finished"
    assert rec2.epochs() == [2, 3]

    list(train(cfg, run_dir=tmp_path / "straight"))
    rows = helpers.epoch_rows(read_events(run_dir / "events.jsonl"))
    ref = helpers.epoch_rows(read_events(tmp_path / "straight" / "events.jsonl"))
    assert [helpers.without_timing(r) for r in rows] == [helpers.without_timing(r) for r in ref]


def test_exception_in_train_fn_becomes_run_failed(no_thread_crash) -> None:
    def broken_train(cfg, control, run_dir=None, resume=False, overwrite=False):
        yield CheckpointSaved(epoch=3, path="somewhere")
        raise RuntimeError("boom in epoch 4")

    rec = Recorder()
    run = BackgroundRun(synthetic(epochs=5), rec, train_fn=broken_train)
    run.start()
    assert run.join(TIMEOUT) and not run.running
    assert len(rec.events) == 2
    failed = rec.events[-1]
    assert isinstance(failed, RunFailed) and run.last_event is failed
    assert failed.status == "error" and failed.epoch == 3
    assert "RuntimeError" in failed.error and "boom in epoch 4" in failed.error
    assert "Traceback" not in failed.error
    assert isinstance(run.error, RuntimeError)


def test_usage_error_of_the_real_train_becomes_run_failed(tmp_path: Path, no_thread_crash) -> None:
    cfg = synthetic(epochs=1)
    list(train(cfg, run_dir=tmp_path / "r"))
    rec = Recorder()
    run = BackgroundRun(cfg, rec, run_dir=tmp_path / "r")  # exists, no overwrite
    run.start()
    assert run.join(TIMEOUT)
    assert [type(e) for e in rec.events] == [RunFailed]
    assert rec.events[0].status == "error" and "already exists" in rec.events[0].error


def test_background_run_finishes_a_short_run(tmp_path: Path, no_thread_crash) -> None:
    rec = Recorder()
    run = BackgroundRun(synthetic(epochs=2), rec, run_dir=tmp_path / "r")
    assert not run.running
    run.start()
    assert run.join(TIMEOUT)
    assert isinstance(run.last_event, RunFinished) and run.last_event.status == "finished"
    assert rec.epochs() == [1, 2] and run.error is None


def test_merge_pause_policy_pauses_a_background_run(tmp_path: Path, no_thread_crash) -> None:
    """gamma x10 an epoch merges the synthetic classes in epoch 3; with the
    'pause' policy the run waits there until resume()."""
    cfg = build_config({"gamma": {"merge_policy": "pause"}},
                       {"dataset": "synthetic", "device": "cpu", "epochs": 6, "gamma_init": 0.01,
                        "gamma_factor": 10.0, "gamma_max": 1e6, "lr": 1e-2})
    rec = Recorder()
    run = BackgroundRun(cfg, rec, run_dir=tmp_path / "r")
    run.start()
    rec.wait_for(lambda: any(getattr(e, "code", "") == "merge_at_origin" for e in rec.events))
    assert run.paused
    time.sleep(0.4)
    assert rec.epochs() == [1, 2, 3] and run.running
    run.resume()
    assert run.join(TIMEOUT)
    assert isinstance(run.last_event, RunFinished) and run.last_event.status == "finished"
    assert rec.epochs() == [1, 2, 3, 4, 5, 6]


def test_cpu_threads_are_set_for_the_run_and_leave_a_core_to_the_ui() -> None:
    import os

    import torch

    from lpc_engine.training.runner import threads_beside_ui
    seen = []

    def fake_train(cfg, control, **kwargs):
        seen.append(torch.get_num_threads())
        yield RunFinished(epoch=0, status="finished")
    before = torch.get_num_threads()
    try:
        run = BackgroundRun(synthetic(), on_event=lambda e: None, train_fn=fake_train, cpu_threads=1)
        run.start()
        assert run.join(TIMEOUT)
        after = torch.get_num_threads()
    finally:
        torch.set_num_threads(before)
    assert seen == [1]
    assert after == before  # the count is process-wide: the run gives it back
    assert threads_beside_ui() == max(1, len(os.sched_getaffinity(0)) - 1)
