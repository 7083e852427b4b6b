"""`lpc run --log-to`: live tracking read back by the tracker's own reader,
and a tracker that fails or stalls never fails or stalls the run."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest

import lpc_engine.trackers.sink as sink_module
from lpc_engine.runs.reader import RunReader
from lpc_engine.trackers.sink import TRACKER_BEHIND, TRACKER_FAILED
from tests.cli.lpc_cli import lpc

TINY = ("--profile", "quick", "--epochs", "4", "--metrics-every", "2", "--robustness-samples", "8",
        "--device", "cpu")


class Broken:
    name, location = "tensorboard", "nowhere"

    def __init__(self, block: float = 0.0, fail: bool = False):
        self.block, self.fail, self.writes = block, fail, 0

    def write(self, batch) -> None:
        if self.fail:
            raise OSError("No space left on device")
        self.writes += 1
        time.sleep(self.block)

    def close(self) -> None:
        if self.fail:
            raise OSError("No space left on device")


def test_live_tensorboard_holds_every_epochs_scalars_and_each_nodes_histograms(tmp_path, capsys) -> None:
    ea = pytest.importorskip("tensorboard.backend.event_processing.event_accumulator")
    code, _, err = lpc(capsys, "run", *TINY, "--log-to", "tensorboard", "--runs-dir", tmp_path, "--name", "a")
    assert code == 0, err
    run = RunReader(tmp_path / "a")
    acc = ea.EventAccumulator(str(tmp_path / "a" / "tensorboard"),
                              size_guidance={ea.SCALARS: 0, ea.HISTOGRAMS: 0}).Reload()
    rows = run.epoch_rows()
    for tag in ("loss", "test_acc", "gamma", "latent_norm_mean"):
        assert [(s.step, s.value) for s in acc.Scalars(tag)] == [
            (r.epoch, float(np.float32(getattr(r, tag)))) for r in rows], tag
    d = run.latent_sample(2).z.shape[1]
    for j in range(d):
        assert [h.step for h in acc.Histograms(f"latent/node_{j}")] == [2, 4]
    assert not [e for e in run.events() if getattr(e, "code", "").startswith("tracker")]


def _run_with(tracker: Broken, tmp_path: Path, capsys, monkeypatch) -> tuple[int, list]:
    monkeypatch.setattr(sink_module, "open_tracker", lambda *args, **kwargs: tracker)
    code, _, err = lpc(capsys, "run", *TINY, "--log-to", "tensorboard", "--runs-dir", tmp_path, "--name", "a")
    return code, RunReader(tmp_path / "a").events()


def test_a_tracker_that_raises_on_every_call_leaves_the_run_finished_with_one_alert(
        tmp_path, capsys, monkeypatch) -> None:
    code, events = _run_with(Broken(fail=True), tmp_path, capsys, monkeypatch)
    assert code == 0 and events[-1].status == "finished"
    alerts = [e for e in events if getattr(e, "code", "").startswith("tracker")]
    assert [a.code for a in alerts] == [TRACKER_FAILED] and "No space left" in alerts[0].message


def test_a_tracker_that_falls_behind_is_dropped_with_one_alert_and_not_waited_for(
        tmp_path, capsys, monkeypatch) -> None:
    monkeypatch.setattr(sink_module, "QUEUE_SIZE", 3)
    monkeypatch.setattr(sink_module.open_sinks, "__defaults__", (3,))
    tracker = Broken(block=30.0)  # blocked in its first write for the whole run
    code, events = _run_with(tracker, tmp_path, capsys, monkeypatch)
    assert code == 0 and events[-1].status == "finished"
    alerts = [e for e in events if getattr(e, "code", "").startswith("tracker")]
    assert [a.code for a in alerts] == [TRACKER_BEHIND] and tracker.writes == 1
