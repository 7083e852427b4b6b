"""Reliability of the engine (docs/RELIABILITY.md): a non-finite loss never
reaches the weights and ends the run as `diverged`; checkpoints carry a
SHA-256, a corrupt newest one falls back to the previous with an alert, a
pickled payload is refused unrun; timed checkpoints; a resume with no
checkpoint restarts; a full disk leaves no partial line or file.

All on the synthetic set (256 train samples, batches of 64: 4 steps an
epoch) on the CPU.
"""

from __future__ import annotations

import copy
import errno
import hashlib
import io
import json
import os
import types
from pathlib import Path

import pytest
import torch

import lpc_engine.runs.durable as durable_module
import lpc_engine.training.epoch as epoch_module
import lpc_engine.runs.store as store_module
from lpc_engine import Alert, CheckpointSaved, EpochEnd, RunFinished, build_config, train
from lpc_engine.errors import CheckpointError, CorruptCheckpoint, StorageError
from lpc_engine.training.session import open_session
from lpc_engine.runs.store import RunStore, checksum_path, load_checkpoint, read_events

STEPS = 4


def synthetic(epochs: int = 4, **fields):
    values = {"robustness_samples": 0, "latent_sample_size": 0, "checkpoint_every": 1, **fields}
    return build_config(values, {"dataset": "synthetic", "device": "cpu", "epochs": epochs})


def poison_from(monkeypatch, first_bad_step: int, on_first=None) -> None:
    """compute_loss returns a NaN loss from global step `first_bad_step` on
    (0-based, counted across epochs); `on_first()` runs just before the first."""
    real, count = epoch_module.compute_loss, [0]

    def poisoned(out, y, obj, share=None):
        loss, ce, penalty = real(out, y, obj, share)
        step, count[0] = count[0], count[0] + 1
        if step == first_bad_step and on_first is not None:
            on_first()
        return (loss * float("nan") if step >= first_bad_step else loss), ce, penalty

    monkeypatch.setattr(epoch_module, "compute_loss", poisoned)


def epoch_rows(run_dir: Path) -> list[dict]:
    return [r for r in read_events(run_dir / "events.jsonl") if r["event"] == "epoch"]


def same_rows(a: list[dict], b: list[dict]) -> bool:
    timing = {"seconds", "samples_per_s"}
    return [{k: v for k, v in r.items() if k not in timing} for r in a] == \
           [{k: v for k, v in r.items() if k not in timing} for r in b]


# --- a non-finite loss --------------------------------------------------------------

def test_a_nan_step_leaves_weights_and_optimizer_state_untouched(monkeypatch) -> None:
    s = open_session(synthetic(), None, None, False)
    before = {}

    def snapshot():  # the state after the last good step
        before["params"] = {n: p.detach().clone() for n, p in s.model.named_parameters()}
        before["optimizer"] = copy.deepcopy(s.optimizer.state_dict())

    poison_from(monkeypatch, 2, on_first=snapshot)  # steps 0 and 1 good, 2 and 3 NaN
    row = s.train_epoch(1)
    assert row is not None and row.loss != row.loss  # NaN: the run will end
    for name, p in s.model.named_parameters():
        assert torch.equal(p, before["params"][name]), name
    state = s.optimizer.state_dict()["state"]
    for index, entry in before["optimizer"]["state"].items():
        for key, value in entry.items():
            assert torch.equal(state[index][key], value), (index, key)
    assert int(state[0]["step"]) == 2  # the skipped steps are not counted either


def test_nan_loss_ends_the_run_diverged_with_the_last_good_checkpoint(tmp_path, monkeypatch) -> None:
    run_dir = tmp_path / "r"
    poison_from(monkeypatch, 2 * STEPS + 1)  # step 1 of epoch 3
    events = list(train(synthetic(epochs=5), run_dir=run_dir))
    end = events[-1]
    assert end.kind == "failed" and end.status == "diverged" and end.epoch == 2
    alerts = [e for e in events if isinstance(e, Alert)]
    assert [(a.code, a.level, a.epoch) for a in alerts] == [("non_finite_loss", "error", 3)]
    assert "epoch-000002-step-0000000.pt" in alerts[0].message
    store = RunStore(run_dir)
    assert [p.name for p in store.checkpoints()] == ["epoch-000001-step-0000000.pt",
                                                    "epoch-000002-step-0000000.pt"]
    state = load_checkpoint(store.latest_checkpoint())  # verifies its checksum
    assert state["epoch"] == 2
    assert all(torch.isfinite(v).all() for v in state["model"].values() if v.is_floating_point())
    assert json.loads((run_dir / "summary.json").read_text())["status"] == "diverged"
    rows = read_events(run_dir / "events.jsonl")
    assert [r["event"] for r in rows][-2:] == ["alert", "failed"]


def test_no_timed_checkpoint_is_written_after_a_nan_step(tmp_path, monkeypatch) -> None:
    """checkpoint_minutes falls due before every step: the saves stop at the bad step."""
    run_dir = tmp_path / "r"
    poison_from(monkeypatch, STEPS + 2)  # step 2 of epoch 2
    events = list(train(synthetic(epochs=3, checkpoint_minutes=1e-9), run_dir=run_dir))
    assert events[-1].status == "diverged" and events[-1].epoch == 1
    saved = [Path(e.path).name for e in events if isinstance(e, CheckpointSaved)]
    assert saved[-1] == "epoch-000001-step-0000002.pt"  # after the last good step
    assert load_checkpoint(run_dir / "checkpoints" / saved[-1])["partial"]["step"] == 2


# --- timed checkpoints ----------------------------------------------------------------------

def test_timed_checkpoints_fall_in_mid_epoch_and_change_nothing(tmp_path) -> None:
    plain = list(train(synthetic(epochs=2, checkpoint_every=10), run_dir=tmp_path / "plain"))
    timed = list(train(synthetic(epochs=2, checkpoint_every=10, checkpoint_minutes=1e-9),
                       run_dir=tmp_path / "timed"))
    names = [Path(e.path).name for e in timed if isinstance(e, CheckpointSaved)]
    assert "epoch-000001-step-0000002.pt" in names and len(names) >= 2 * STEPS
    assert len(RunStore(tmp_path / "timed").checkpoints()) == 2
    assert same_rows(epoch_rows(tmp_path / "timed"), epoch_rows(tmp_path / "plain"))
    assert [e.epoch for e in plain if isinstance(e, EpochEnd)] == [1, 2]


def test_checkpoint_minutes_is_validated() -> None:
    from lpc_engine.errors import ConfigError
    with pytest.raises(ConfigError, match=r"checkpoint_minutes: must be in \[0, 1e\+06\]"):
        synthetic(checkpoint_minutes=-1.0)


# --- checksums and safe loading ----------------------------------------------------------

@pytest.fixture(scope="module")
def straight(tmp_path_factory) -> Path:
    run_dir = tmp_path_factory.mktemp("straight") / "r"
    list(train(synthetic(), run_dir=run_dir))
    return run_dir


def _stopped_after(run_dir: Path, epochs: int) -> None:
    """A run of synthetic(), stopped after `epochs` epochs, checkpoints each epoch."""
    from lpc_engine import Control
    control = Control()
    for event in train(synthetic(), control, run_dir=run_dir):
        if isinstance(event, EpochEnd) and event.epoch == epochs:
            control.stop.set()


@pytest.mark.parametrize("damage", ["flip a byte", "truncate", "empty"])
def test_a_corrupt_newest_checkpoint_falls_back_to_the_previous(damage, tmp_path, straight) -> None:
    run_dir = tmp_path / "r"
    _stopped_after(run_dir, 3)
    newest = RunStore(run_dir).latest_checkpoint()
    data = bytearray(newest.read_bytes())
    if damage == "flip a byte":
        data[len(data) // 2] ^= 0xFF
    newest.write_bytes(bytes(data[:len(data) // 2] if damage == "truncate" else
                             b"" if damage == "empty" else data))
    with pytest.raises(CorruptCheckpoint):
        load_checkpoint(newest)
    events = list(train(synthetic(), run_dir=run_dir, resume=True))
    assert events[0].start_epoch == 3  # from epoch 2's checkpoint
    alert = [e for e in events if isinstance(e, Alert)][0]
    assert alert.code == "checkpoint_corrupt" and newest.name in alert.message
    assert isinstance(events[-1], RunFinished) and events[-1].status == "finished"
    assert (newest.parent / (newest.name + ".corrupt")).is_file()  # set aside, not deleted
    assert same_rows(epoch_rows(run_dir), epoch_rows(straight))


def test_checksum_file_is_sha256sum_compatible(tmp_path) -> None:
    store = RunStore(tmp_path / "r")
    store.create({}, "")
    path = store.save_checkpoint({"epoch": 1, "w": torch.ones(3)}, 1)
    digest, name = checksum_path(path).read_text().split()
    assert digest == hashlib.sha256(path.read_bytes()).hexdigest() and name == path.name
    checksum_path(path).unlink()  # a checkpoint from before checksums still loads
    assert load_checkpoint(path)["epoch"] == 1


class _RunsCode:
    """Unpickling this calls `func(*args)`: what a malicious checkpoint does."""

    def __init__(self, func, args):
        self.func, self.args = func, args

    def __reduce__(self):
        return self.func, self.args


@pytest.mark.parametrize("how", ["open", "os.system"])
def test_a_pickled_payload_is_refused_and_never_runs(how, tmp_path, helpers) -> None:
    run_dir, marker = tmp_path / "r", tmp_path / "pwned"
    _stopped_after(run_dir, 2)
    payload = (_RunsCode(open, (str(marker), "w")) if how == "open"
               else _RunsCode(os.system, (f"touch {marker}",)))
    buffer = io.BytesIO()
    torch.save({**load_checkpoint(RunStore(run_dir).latest_checkpoint()), "extra": payload}, buffer)
    evil = run_dir / "checkpoints" / "epoch-000009-step-0000000.pt"  # the newest, with a good checksum
    evil.write_bytes(buffer.getvalue())
    checksum_path(evil).write_text(f"{hashlib.sha256(buffer.getvalue()).hexdigest()}  {evil.name}\n")
    before = helpers.tree(run_dir)
    with pytest.raises(CheckpointError, match="not a plain-weights checkpoint") as info:
        load_checkpoint(evil)
    assert not isinstance(info.value, CorruptCheckpoint)  # refused, not merely skipped
    with pytest.raises(CheckpointError, match="not a plain-weights checkpoint"):
        list(train(synthetic(), run_dir=run_dir, resume=True))
    assert not marker.exists()
    assert helpers.tree(run_dir) == before  # a refused resume changes nothing


# --- resume edge cases --------------------------------------------------------------------

def test_resume_before_the_first_checkpoint_restarts_at_epoch_1(tmp_path, straight) -> None:
    run_dir = tmp_path / "r"
    events = train(synthetic(), run_dir=run_dir)
    next(events)  # the run directory exists, with no checkpoint ...
    events.close()  # ... when the process dies
    resumed = list(train(synthetic(), run_dir=run_dir, resume=True))
    assert resumed[0].start_epoch == 1
    assert [e.code for e in resumed if isinstance(e, Alert)] == ["no_checkpoint"]
    assert same_rows(epoch_rows(run_dir), epoch_rows(straight))


def test_resume_removes_the_debris_of_a_killed_write(tmp_path) -> None:
    run_dir = tmp_path / "r"
    _stopped_after(run_dir, 2)
    debris = [run_dir / "checkpoints" / ".epoch-000003-step-0000000.pt.tmp4242",
              run_dir / ".summary.json.tmp4242",
              run_dir / "checkpoints" / "epoch-000003-step-0000000.pt.sha256"]
    for path in debris:
        path.write_bytes(b"x")
    list(train(synthetic(), run_dir=run_dir, resume=True))
    assert not any(p.exists() for p in debris[:2])
    names = sorted(p.name for p in (run_dir / "checkpoints").iterdir())
    assert names == ["epoch-000003-step-0000000.pt", "epoch-000003-step-0000000.pt.sha256",
                     "epoch-000004-step-0000000.pt", "epoch-000004-step-0000000.pt.sha256"]


# --- a full disk ----------------------------------------------------------------------------

def _failing_os(fail_when) -> types.SimpleNamespace:
    """The os module, but write(2) on events.jsonl writes half a line and then
    fails with ENOSPC when `fail_when(data)` says so."""
    fake = types.SimpleNamespace(**vars(os))

    def write(fd, data):
        if fail_when(data):
            os.write(fd, data[:len(data) // 2])
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return os.write(fd, data)

    fake.write = write
    return fake


def test_a_full_disk_in_mid_run_leaves_no_partial_line(tmp_path, monkeypatch, straight) -> None:
    run_dir = tmp_path / "r"
    monkeypatch.setattr(store_module, "os", _failing_os(lambda d: b'"epoch": 3, "loss"' in d))
    with pytest.raises(StorageError, match="No space left on device") as info:
        list(train(synthetic(), run_dir=run_dir))
    assert "events.jsonl" in str(info.value)
    text = (run_dir / "events.jsonl").read_text()
    assert text.endswith("\n") and all(json.loads(line) for line in text.splitlines())
    monkeypatch.undo()
    list(train(synthetic(), run_dir=run_dir, resume=True))  # once space is back
    assert same_rows(epoch_rows(run_dir), epoch_rows(straight))


def test_a_full_disk_while_checkpointing_leaves_no_partial_file(tmp_path, monkeypatch) -> None:
    run_dir, real_open, calls = tmp_path / "r", open, [0]

    class Full(io.FileIO):
        def write(self, data):
            super().write(bytes(data)[:100])
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    def full_on_third_checkpoint(path, mode="r", *args, **kwargs):
        if ".pt.tmp" in str(path):
            calls[0] += 1
            if calls[0] == 3:
                return Full(path, "w")
        return real_open(path, mode, *args, **kwargs)

    monkeypatch.setattr(durable_module, "open", full_on_third_checkpoint, raising=False)
    with pytest.raises(StorageError, match="No space left on device"):
        list(train(synthetic(), run_dir=run_dir))
    names = sorted(p.name for p in (run_dir / "checkpoints").iterdir())
    assert names == ["epoch-000001-step-0000000.pt", "epoch-000001-step-0000000.pt.sha256",
                     "epoch-000002-step-0000000.pt", "epoch-000002-step-0000000.pt.sha256"]
    assert all(load_checkpoint(run_dir / "checkpoints" / n) for n in names if n.endswith(".pt"))


# --- creating a run -------------------------------------------------------------------------

def test_a_run_directory_appears_whole(tmp_path, monkeypatch) -> None:
    """Built under a hidden name and renamed: a create that fails half-way
    leaves nothing, and the debris of a killed one neither shows nor blocks."""
    store = RunStore(tmp_path / "runs" / "r")
    real = store_module.atomic_write

    def fail_on_config_json(path, data):
        if path.name == "config.json":
            raise OSError(errno.EIO, os.strerror(errno.EIO))
        real(path, data)

    monkeypatch.setattr(store_module, "atomic_write", fail_on_config_json)
    with pytest.raises(store_module.UsageError, match="cannot write"):
        store.create({"epochs": 1}, "")
    assert not (tmp_path / "runs").exists()
    monkeypatch.undo()
    debris = tmp_path / "runs" / ".r.new4242"  # what a SIGKILL in mid-create leaves
    (debris / "checkpoints").mkdir(parents=True)
    (debris / "config.json").write_text("{}")
    assert store_module.list_runs(tmp_path / "runs") == []
    store.create({"epochs": 1}, "")
    assert store.exists() and not debris.exists()


def test_load_run_passes_over_a_corrupt_newest_checkpoint_with_a_warning(tmp_path) -> None:
    from lpc_engine import load_run
    run_dir = tmp_path / "r"
    _stopped_after(run_dir, 3)
    newest = RunStore(run_dir).latest_checkpoint()
    newest.write_bytes(newest.read_bytes()[:100])
    with pytest.warns(UserWarning, match="using an older checkpoint"):
        run = load_run(run_dir)
    assert run.epoch == 2
