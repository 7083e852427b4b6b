"""The run store: atomic writes, events.jsonl, checkpoints, run names, list_runs."""

from __future__ import annotations

import errno
import json
import math
import os
import time
from pathlib import Path

import pytest
import torch

import lpc_engine.runs.store as store_module
from lpc_engine import UsageError, build_config, train
from lpc_engine.errors import CheckpointError
from lpc_engine.runs.store import (RunStore, atomic_write, json_safe, list_runs, load_checkpoint,
                              read_events, run_path)


def _rows(*rows: dict) -> str:
    return "".join(json.dumps(r) + "\n" for r in rows)


# --- atomic_write -------------------------------------------------------------

def test_atomic_write_replaces_the_file_and_leaves_no_temp_file(tmp_path: Path) -> None:
    target = tmp_path / "summary.json"
    atomic_write(target, b"old")
    atomic_write(target, b'{"new": 1}')
    assert target.read_bytes() == b'{"new": 1}'
    assert sorted(p.name for p in tmp_path.iterdir()) == ["summary.json"]


def test_atomic_write_cleans_up_after_a_failed_write(tmp_path: Path, monkeypatch) -> None:
    target = tmp_path / "summary.json"
    atomic_write(target, b"old")

    def full(fd: int) -> None:
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(store_module.os, "fsync", full)
    with pytest.raises(OSError):
        atomic_write(target, b"new")
    assert target.read_bytes() == b"old"  # the old file survives (this part holds)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["summary.json"]


# --- events.jsonl ---------------------------------------------------------------

def test_read_events_skips_a_torn_last_line(tmp_path: Path) -> None:
    path = tmp_path / "events.jsonl"
    path.write_text(_rows({"event": "started"}, {"event": "epoch", "epoch": 1})
                    + '{"event": "epoch", "epo')
    assert read_events(path) == [{"event": "started"}, {"event": "epoch", "epoch": 1}]


def test_read_events_of_a_missing_file_and_of_non_objects(tmp_path: Path) -> None:
    assert read_events(tmp_path / "none.jsonl") == []
    path = tmp_path / "events.jsonl"
    path.write_text('[1, 2]\n"text"\n\n{"event": "epoch", "epoch": 1}\n')
    assert read_events(path) == [{"event": "epoch", "epoch": 1}]


def test_truncate_events_drops_rows_after_an_epoch(tmp_path: Path) -> None:
    store = RunStore(tmp_path / "r")
    store.create({"epochs": 4}, "epochs = 4\n")
    rows = [{"event": "started", "start_epoch": 1}]
    for epoch in (1, 2, 3, 4):
        rows.append({"event": "epoch", "epoch": epoch})
        if epoch == 2:
            rows.append({"event": "checkpoint", "epoch": 2, "path": "x"})
        if epoch == 3:
            rows.append({"event": "alert", "epoch": 3, "code": "merge_at_origin"})
    rows.append({"event": "finished", "epoch": 4, "status": "finished"})
    for row in rows:
        store.append(row)
    store.truncate_events(2)
    assert read_events(store.events_path) == rows[:4]  # started, epoch 1, epoch 2, checkpoint 2
    store.append({"event": "epoch", "epoch": 3})  # appending goes on after the truncation
    store.close()
    assert [r.get("epoch") for r in read_events(store.events_path)] == [None, 1, 2, 2, 3]


def test_truncate_events_drops_the_end_of_a_stopped_session(tmp_path: Path) -> None:
    """A session stopped after epoch 2 wrote 'finished' (stopped) at epoch 2:
    resuming from that checkpoint must not keep it."""
    store = RunStore(tmp_path / "r")
    store.create({}, "")
    (store.events_path).write_text(_rows(
        {"event": "started"}, {"event": "epoch", "epoch": 1}, {"event": "epoch", "epoch": 2},
        {"event": "finished", "epoch": 2, "status": "stopped"}))
    store.truncate_events(2)
    assert [r["event"] for r in read_events(store.events_path)] == ["started", "epoch", "epoch"]


def test_append_writes_strict_json_lines(tmp_path: Path) -> None:
    store = RunStore(tmp_path / "r")
    store.create({"x": float("nan")}, "")
    store.append({"event": "epoch", "epoch": 1, "test_acc": float("nan"), "loss": float("inf")})
    store.close()

    def no_constants(name: str) -> None:
        raise AssertionError(f"non-standard JSON constant {name}")

    line = store.events_path.read_text().splitlines()[0]
    row = json.loads(line, parse_constant=no_constants)
    assert row["test_acc"] is None and row["loss"] is None
    assert json.loads((store.dir / "config.json").read_text(), parse_constant=no_constants) == {"x": None}


def test_json_safe_nests() -> None:
    assert json_safe({"a": [1.0, math.nan, {"b": -math.inf}], "c": (2, "s")}) == \
        {"a": [1.0, None, {"b": None}], "c": [2, "s"]}


# --- run directories -----------------------------------------------------------

@pytest.mark.parametrize("name", ["a", "run-1", "lpc_digits.s0", "x=1+y", "A9", "a" * 128])
def test_run_path_accepts_plain_names(tmp_path: Path, name: str) -> None:
    path = run_path(tmp_path, name)
    assert path == tmp_path / name
    assert path.resolve().parent == tmp_path.resolve()


@pytest.mark.parametrize("name", ["../x", "..", ".", "", "a/b", "/abs", "a\\b", ".hidden",
                                  "-rf", "a..b", "x/../../y", "a b", "a\nb", "a" * 129, "~"])
def test_run_path_rejects_names_that_could_escape(tmp_path: Path, name: str) -> None:
    with pytest.raises(UsageError):
        run_path(tmp_path, name)


def test_create_refuses_an_existing_run_and_overwrite_replaces_it(tmp_path: Path) -> None:
    store = RunStore(tmp_path / "r")
    store.create({"v": 1}, "v = 1\n")
    store.append({"event": "epoch", "epoch": 1})
    store.save_checkpoint({"epoch": 1}, 1)
    store.write_summary({"status": "finished"})
    with pytest.raises(UsageError, match="being written by pid"):  # its writer still holds it
        RunStore(tmp_path / "r").create({"v": 2}, "v = 2\n", overwrite=True)
    store.release()
    with pytest.raises(UsageError):
        RunStore(tmp_path / "r").create({"v": 2}, "v = 2\n")
    assert store.read_config() == {"v": 1} and store.read_summary() == {"status": "finished"}
    for leftover in ("latents/epoch-000100.npz", "tensorboard/events.out", "epochs.csv"):
        (tmp_path / "r" / leftover).parent.mkdir(exist_ok=True)
        (tmp_path / "r" / leftover).write_text("the old run's")
    RunStore(tmp_path / "r").create({"v": 2}, "v = 2\n", overwrite=True)
    assert store.read_config() == {"v": 2}
    assert store.read_summary() is None
    assert store.checkpoints() == [] and read_events(store.events_path) == []
    # Nothing of the old run passes for the new one's (the TUI draws any latents/ it finds).
    assert sorted(p.name for p in (tmp_path / "r").iterdir()) == ["checkpoints", "config.json", "config.toml",
                                                                 "events.jsonl", "lock"]


def test_create_into_an_empty_existing_folder(tmp_path: Path) -> None:
    (tmp_path / "r").mkdir()
    RunStore(tmp_path / "r").create({}, "")
    assert RunStore(tmp_path / "r").exists()


# --- checkpoints -----------------------------------------------------------------

def test_checkpoints_keep_the_last_two(tmp_path: Path) -> None:
    store = RunStore(tmp_path / "r")
    store.create({}, "")
    for epoch in range(1, 6):
        path = store.save_checkpoint({"epoch": epoch, "w": torch.ones(2) * epoch}, epoch)
        assert path.is_file()
    assert [p.name for p in store.checkpoints()] == ["epoch-000004-step-0000000.pt", "epoch-000005-step-0000000.pt"]
    assert load_checkpoint(store.latest_checkpoint())["epoch"] == 5
    assert not [p for p in store.checkpoint_dir.iterdir() if p.name.startswith(".")]


def test_latest_checkpoint_is_the_mid_epoch_one_saved_after_an_epoch_end(tmp_path: Path) -> None:
    store = RunStore(tmp_path / "r")
    store.create({}, "")
    store.save_checkpoint({"epoch": 5, "partial": None}, 5)
    newer = store.save_checkpoint({"epoch": 5, "partial": {"step": 3}}, 5, step=3)
    assert store.latest_checkpoint() == newer


def test_load_checkpoint_refuses_pickled_objects(tmp_path: Path) -> None:
    """weights_only=True: a checkpoint that would run code on load is refused."""
    path = tmp_path / "evil.pt"
    torch.save({"epoch": 1, "payload": Path("x")}, path)  # any non-allow-listed class
    with pytest.raises(CheckpointError, match="not a plain-weights checkpoint"):
        load_checkpoint(path)


# --- list_runs ---------------------------------------------------------------------

def test_list_runs(tmp_path: Path) -> None:
    runs = tmp_path / "runs"
    cfg = build_config(None, {"dataset": "synthetic", "device": "cpu", "epochs": 1})
    list(train(cfg, run_dir=runs / "first"))
    time.sleep(0.02)
    list(train(build_config(None, {"dataset": "synthetic", "device": "cpu", "epochs": 2,
                                   "preset": "nopen"}), run_dir=runs / "second"))
    incomplete = RunStore(runs / "third")
    incomplete.create(json.loads((runs / "first" / "config.json").read_text()), "")
    os.utime(runs / "third", (time.time() + 10, time.time() + 10))
    (runs / "not-a-run").mkdir()
    (runs / "stray.txt").write_text("x")
    rows = list_runs(runs)
    assert [r["name"] for r in rows] == ["third", "second", "first"]  # newest first
    by_name = {r["name"]: r for r in rows}
    assert by_name["second"]["preset"] == "nopen" and by_name["second"]["dataset"] == "synthetic"
    assert by_name["second"]["epochs_done"] == 2 and by_name["second"]["epochs"] == 2
    assert by_name["second"]["status"] == "finished"
    summary = json.loads((runs / "second" / "summary.json").read_text())
    assert by_name["second"]["test_acc"] == summary["test_acc"]
    assert by_name["second"]["separation_ratio"] == summary["metrics"]["separation_ratio"]
    assert by_name["second"]["robustness_mean"] == summary["robustness"]["robustness_mean"]
    assert by_name["third"]["status"] == "incomplete" and by_name["third"]["epochs_done"] == 0
    assert by_name["third"]["separation_ratio"] is None
    assert list_runs(tmp_path / "missing") == []


def test_a_run_whose_writer_holds_a_pause_request_is_paused(tmp_path: Path) -> None:
    from lpc_engine.runs.control import request
    from lpc_engine.runs.reader import run_state

    store = RunStore(tmp_path / "r")
    store.create({"v": 1}, "v = 1\n")  # takes the lock: this process writes it
    assert run_state(store.dir, None) == "running"
    request(store.dir, "pause")
    assert run_state(store.dir, None) == "paused"
    request(store.dir, "resume")
    assert run_state(store.dir, None) == "running"
    store.release()
    assert run_state(store.dir, None) == "stale"  # no writer, no last row
