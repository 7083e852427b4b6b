"""Tracker bridges (lpc_engine/trackers): the event -> record mapping, each
tracker's export read back by that tracker's own reader (TensorBoard's
EventAccumulator, the MLflow client, the records of W&B's offline .wandb
file), the live sink that never stalls training, and `lpc export`.

One short digits run (4 epochs, metrics every 2, a small DeepFool table),
trained once for the module, is what every export reads.
"""

from __future__ import annotations

import importlib
import json
import queue
import shutil
import struct
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from lpc_engine import (Alert, EpochEnd, LatentSample, MetricsComputed, RobustnessComputed, RunFinished,
                        RunStarted, UsageError, build_config, train)
from lpc_engine.runs.lock import RunLock
from lpc_engine.runs.reader import RunReader
from lpc_engine.trackers import TRACKERS, default_out, open_tracker, parse_log_to, require_installed
from lpc_engine.trackers.export import export_run
from lpc_engine.trackers.mapping import ConfigRecord, Final, Histogram, Note, Scalar, records
from lpc_engine.trackers.sink import TRACKER_BEHIND, TRACKER_FAILED, TrackerSink, open_sinks

EPOCHS, MEASURED = 4, (2, 4)
PLAIN_TAGS = ("loss", "test_acc", "gamma", "latent_norm_mean")


def tiny_config(**flags):
    return build_config(None, {"epochs": EPOCHS, "metrics_every": 2, "robustness_samples": 8,
                               "profile": "quick", "device": "cpu", "latent_sample_size": 200, **flags})


@pytest.fixture(scope="module")
def run(tmp_path_factory) -> Path:
    """A finished digits run in its own folder (~2 s)."""
    run_dir = tmp_path_factory.mktemp("runs") / "lpc-digits"
    events = list(train(tiny_config(), run_dir=run_dir))
    assert isinstance(events[-1], RunFinished) and events[-1].status == "finished"
    return run_dir


def epoch_rows(run_dir: Path) -> list[EpochEnd]:
    return RunReader(run_dir).epoch_rows()


def f32(value: float) -> float:
    return float(np.float32(value))


# --- the mapping -----------------------------------------------------------------

def _row(**changes) -> EpochEnd:
    values = dict(epoch=3, loss=1.5, ce=1.0, penalty=0.5, gamma=0.1, lr=1e-3, train_acc=0.9,
                  test_acc=float("nan"), latent_norm_mean=2.0, latent_norm_cov=0.1, seconds=0.2,
                  samples_per_s=1e4, gamma_scheduled=0.12)
    return EpochEnd(**{**values, **changes})


def test_an_epoch_row_is_one_scalar_a_numeric_field_at_its_epoch_nan_left_out() -> None:
    out = records(_row())
    assert all(isinstance(r, Scalar) and r.step == 3 for r in out)
    assert {r.tag: r.value for r in out} == {
        "loss": 1.5, "ce": 1.0, "penalty": 0.5, "gamma": 0.1, "lr": 1e-3, "train_acc": 0.9,
        "latent_norm_mean": 2.0, "latent_norm_cov": 0.1, "seconds": 0.2, "samples_per_s": 1e4,
        "gamma_scheduled": 0.12}


def test_metrics_robustness_latents_config_alerts_and_the_end_map_to_their_places() -> None:
    metrics = records(MetricsComputed(epoch=2, metrics={"sigma_w": 0.5, "nc1": float("nan")}))
    assert metrics == [Scalar("metrics/sigma_w", 0.5, 2)]
    table = records(RobustnessComputed(epoch=4, table={"robustness_mean": 0.3}))
    assert table == [Scalar("robustness/robustness_mean", 0.3, 4)]
    z = np.array([[1.0, np.nan], [2.0, 3.0], [4.0, np.inf]], dtype=np.float32)
    hist = records(LatentSample(epoch=2, z=z, y=np.array([0, 1, 0])))
    assert all(isinstance(h, Histogram) and h.values.dtype == np.float32 for h in hist)
    assert [(h.tag, h.step, h.values.tolist()) for h in hist] == [
        ("latent/node_0", 2, [1.0, 2.0, 4.0]), ("latent/node_1", 2, [3.0])]
    config = {"epochs": 4, "gamma": {"gamma_init": 0.01}, "loss": {"margin_scale": [16.0, 64.0]}}
    started, = records(RunStarted(run_dir="", device="cpu", start_epoch=1, epochs=4, num_params=1,
                                  num_train=1, num_test=1, config=config))
    assert isinstance(started, ConfigRecord) and json.loads(started.text) == config
    assert started.params == {"epochs": 4, "gamma.gamma_init": 0.01, "loss.margin_scale": "[16.0, 64.0]"}
    note, = records(Alert(epoch=3, code="merge_at_origin", message="classes merge"))
    assert isinstance(note, Note) and note.step == 3 and "merge_at_origin" in note.text
    end, = records(RunFinished(epoch=4, status="finished", summary={"test_acc": 0.9}))
    assert end == Final(status="finished", epoch=4, failed=False, summary={"test_acc": 0.9})


def test_log_to_names_trackers_once_and_refuses_others() -> None:
    assert parse_log_to("") == () and parse_log_to(" , ") == ()
    assert parse_log_to("tensorboard, wandb,TensorBoard") == ("tensorboard", "wandb")
    with pytest.raises(UsageError, match="choose from tensorboard, wandb, mlflow"):
        parse_log_to("tensorboard,neptune")
    assert default_out("tensorboard", "R") == Path("R/tensorboard")
    assert default_out("mlflow", "R") == Path("R/mlflow") and default_out("wandb", "R") == Path("R")


@pytest.mark.parametrize("name", TRACKERS)
def test_a_missing_library_is_bad_usage_naming_its_extra(name, monkeypatch, tmp_path) -> None:
    module = {"tensorboard": "tensorboard", "wandb": "wandb", "mlflow": "mlflow"}[name]
    monkeypatch.setitem(sys.modules, module, None)  # import fails as if it were not installed
    extra = f"pip install 'lpc-studio\\[{name}\\]'"
    with pytest.raises(UsageError, match=extra):
        open_tracker(name, tmp_path, {}, "r")
    with pytest.raises(UsageError, match=extra):
        require_installed((name,))


def test_the_lightning_callback_without_lightning_is_bad_usage(monkeypatch) -> None:
    monkeypatch.setitem(sys.modules, "lightning", None)
    monkeypatch.setitem(sys.modules, "lightning.pytorch", None)
    monkeypatch.delitem(sys.modules, "lpc_engine.integrations.lightning", raising=False)  # restored after
    with pytest.raises(UsageError, match=r"pip install 'lpc-studio\[lightning\]'"):
        importlib.import_module("lpc_engine.integrations.lightning")


# --- TensorBoard ----------------------------------------------------------------------

def _accumulator(folder: Path):
    ea = pytest.importorskip("tensorboard.backend.event_processing.event_accumulator")
    acc = ea.EventAccumulator(str(folder), size_guidance={ea.SCALARS: 0, ea.HISTOGRAMS: 0, ea.TENSORS: 0})
    return acc.Reload()


def test_tensorboard_export_reads_back_every_epoch_and_each_nodes_histograms(run) -> None:
    pytest.importorskip("torch.utils.tensorboard")
    written = export_run(run, "tensorboard")
    acc = _accumulator(run / "tensorboard")
    rows = epoch_rows(run)
    for tag in PLAIN_TAGS:
        points = [(s.step, s.value) for s in acc.Scalars(tag)]
        assert points == [(r.epoch, f32(getattr(r, tag))) for r in rows], tag
    samples = {e: RunReader(run).latent_sample(e) for e in MEASURED}
    d = samples[2].z.shape[1]
    assert {f"latent/node_{j}" for j in range(d)} <= set(acc.Tags()["histograms"])
    for j in range(d):
        hist = acc.Histograms(f"latent/node_{j}")
        assert [h.step for h in hist] == list(MEASURED)
        for h in hist:
            column = samples[h.step].z[:, j]
            value = h.histogram_value
            assert value.num == len(column) and sum(value.bucket) == len(column)
            assert (value.min, value.max) == (float(column.min()), float(column.max()))
            assert value.sum == pytest.approx(float(column.astype(np.float64).sum()), rel=1e-5, abs=1e-6)
    metrics = RunReader(run).metrics_rows()[-1]
    assert acc.Scalars("metrics/separation_ratio")[-1].value == pytest.approx(
        metrics.metrics["separation_ratio"], rel=1e-6)
    assert [s.step for s in acc.Scalars("robustness/robustness_mean")] == [EPOCHS]
    assert "config" in " ".join(acc.Tags()["tensors"])
    assert written == len(RunReader(run).events()) + len(MEASURED)


def test_exporting_to_tensorboard_again_replaces_rather_than_doubles(run, tmp_path) -> None:
    pytest.importorskip("torch.utils.tensorboard")
    out = tmp_path / "tb"
    export_run(run, "tensorboard", out=out)
    export_run(run, "tensorboard", out=out)
    assert len(list(out.glob("events.out.tfevents.*"))) == 1
    assert [s.step for s in _accumulator(out).Scalars("loss")] == list(range(1, EPOCHS + 1))


def test_live_sinks_write_what_train_yields(tmp_path) -> None:
    pytest.importorskip("torch.utils.tensorboard")
    run_dir, alerts = tmp_path / "live", queue.SimpleQueue()
    sinks = None
    for event in train(tiny_config(robustness_samples=0), run_dir=run_dir):
        if isinstance(event, RunStarted):
            sinks = open_sinks(("tensorboard",), run_dir, event.config, run_dir.name, alerts.put)
        sinks.send(event)
    assert sinks.close(timeout=5.0) and alerts.empty()
    acc = _accumulator(run_dir / "tensorboard")
    assert [s.step for s in acc.Scalars("gamma")] == list(range(1, EPOCHS + 1))
    assert [h.step for h in acc.Histograms("latent/node_0")] == list(MEASURED)


def test_a_resumed_run_draws_each_epoch_once_in_tensorboard(tmp_path) -> None:
    """Epoch 3 is trained, then lost (the last checkpoint is epoch 2) and
    trained again by the resume: its second session's event file starts with
    a purge at epoch 3, so TensorBoard drops the first session's point."""
    pytest.importorskip("torch.utils.tensorboard")
    run_dir, alerts = tmp_path / "resumed", queue.SimpleQueue()
    cfg = tiny_config(metrics_every=0, robustness_samples=0, latent_sample_size=0, checkpoint_every=2)

    def session(events, last=None):
        sinks = None
        for event in events:
            if isinstance(event, RunStarted):
                sinks = open_sinks(("tensorboard",), run_dir, event.config, run_dir.name, alerts.put)
            sinks.send(event)
            if isinstance(event, EpochEnd) and event.epoch == last:
                break
        events.close()  # a crash after epoch `last`: the generator lets go of the run
        assert sinks.close(timeout=5.0)
        return sinks

    session(train(cfg, run_dir=run_dir), last=3)
    session(train(cfg, run_dir=run_dir, resume=True))
    assert len(list((run_dir / "tensorboard").glob("events.out.tfevents.*"))) == 2
    losses = _accumulator(run_dir / "tensorboard").Scalars("loss")
    assert [s.step for s in losses] == list(range(1, EPOCHS + 1))
    assert alerts.empty()


# --- MLflow ---------------------------------------------------------------------------

def _mlflow_runs(uri: str):
    tracking = pytest.importorskip("mlflow.tracking")
    client = tracking.MlflowClient(tracking_uri=uri)
    experiment = client.get_experiment_by_name("lpc-studio")
    return client, client.search_runs([experiment.experiment_id])


def test_mlflow_export_reads_back_every_epochs_metrics(run, tmp_path, monkeypatch) -> None:
    pytest.importorskip("mlflow")
    monkeypatch.delenv("MLFLOW_ALLOW_FILE_STORE", raising=False)  # restored after the test
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    out = tmp_path / "mlflow"
    export_run(run, "mlflow", out=out)
    client, (found,) = _mlflow_runs(out.resolve().as_uri())
    rows = epoch_rows(run)
    for tag in PLAIN_TAGS:
        history = sorted((m.step, m.value) for m in client.get_metric_history(found.info.run_id, tag))
        assert history == [(r.epoch, pytest.approx(getattr(r, tag), rel=1e-12)) for r in rows], tag
    steps = [m.step for m in client.get_metric_history(found.info.run_id, "metrics/sigma_w")]
    assert sorted(steps) == list(MEASURED)
    assert found.info.status == "FINISHED" and found.info.run_name == run.name
    assert found.data.params["gamma.gamma_init"] == json.dumps(RunReader(run).config()["gamma"]["gamma_init"])
    config_text = (Path(found.info.artifact_uri.removeprefix("file://")) / "config.json").read_text()
    assert json.loads(config_text) == RunReader(run).config()


def test_mlflow_honours_the_tracking_uri(run, tmp_path, monkeypatch) -> None:
    pytest.importorskip("mlflow")
    uri = (tmp_path / "server-store").resolve().as_uri()
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")
    export_run(run, "mlflow")
    _, (found,) = _mlflow_runs(uri)
    assert found.info.status == "FINISHED"


# --- W&B, offline ---------------------------------------------------------------------

def wandb_records(path: Path) -> list:
    """The protobuf Records of a .wandb file. wandb 0.31 ships no Python reader
    of its transaction log (the offline run's history lives only there), so
    this reads its documented framing: a 7-byte header (":W&B", magic 0xBEE1,
    version), then LevelDB log records in 32 KiB blocks, each with a 7-byte
    header (crc32, length, type: 1 full, 2 first, 3 middle, 4 last)."""
    pb = pytest.importorskip("wandb.proto.wandb_internal_pb2")
    data, block = path.read_bytes(), 32768
    assert data[:4] == b":W&B"
    pos, parts, out = 7, b"", []
    while pos + 7 <= len(data):
        if block - pos % block < 7:  # a block's trailer too short for a header is padding
            pos += block - pos % block
            continue
        _, length, kind = struct.unpack("<IHB", data[pos:pos + 7])
        if pos + 7 + length > len(data):  # still being written
            break
        parts += data[pos + 7:pos + 7 + length]
        pos += 7 + length
        if kind in (1, 4):
            record = pb.Record()
            record.ParseFromString(parts)
            out.append(record)
            parts = b""
    return out


@pytest.fixture(scope="module")
def wandb_export(run, tmp_path_factory):
    pytest.importorskip("wandb")
    mp = pytest.MonkeyPatch()
    home = tmp_path_factory.mktemp("wandb-home")
    for key, value in {"WANDB_MODE": "offline", "WANDB_SILENT": "true", "WANDB_DIR": str(home),
                       "WANDB_CONFIG_DIR": str(home / "config"), "WANDB_CACHE_DIR": str(home / "cache")}.items():
        mp.setenv(key, value)
    try:
        out = tmp_path_factory.mktemp("wandb-out")
        where: list[str] = []
        written = export_run(run, "wandb", out=out, on_open=lambda t: where.append(t.location))
    finally:
        mp.undo()
    files = list(Path(where[0]).glob("run-*.wandb"))
    assert len(files) == 1 and Path(where[0]).parent == out / "wandb"
    return written, _whole(files[0])


def _whole(path: Path, seconds: float = 10.0) -> list:
    """The records once the file ends with the run's exit record: wandb's
    service writes the last block a moment after finish() returns
    (trackers/wandb_writer.py)."""
    deadline = time.monotonic() + seconds
    while True:
        recs = wandb_records(path)
        if (recs and recs[-1].WhichOneof("record_type") == "exit") or time.monotonic() > deadline:
            return recs
        time.sleep(0.05)


def test_a_wandb_offline_run_holds_every_epochs_history(run, wandb_export) -> None:
    _, recs = wandb_export
    history: dict[int, dict[str, object]] = {}
    for r in recs:
        if r.WhichOneof("record_type") == "history":
            row = history.setdefault(r.history.step.num, {})
            for item in r.history.item:
                key = "/".join(item.nested_key) if item.nested_key else item.key
                row[key] = json.loads(item.value_json)
    for epoch_row in epoch_rows(run):
        row = history[epoch_row.epoch]
        for tag in PLAIN_TAGS:
            assert row[tag] == pytest.approx(getattr(epoch_row, tag), rel=1e-12), (epoch_row.epoch, tag)
    for epoch in MEASURED:
        assert history[epoch]["latent/node_0/_type"] == "histogram"
        assert sum(history[epoch]["latent/node_0/values"]) == 200
        assert "metrics/separation_ratio" in history[epoch]
    runs = [r.run for r in recs if r.WhichOneof("record_type") == "run"]
    assert runs[0].project == "lpc-studio" and runs[0].display_name == run.name
    config = {u.key: json.loads(u.value_json) for u in runs[0].config.update}
    assert config["epochs"] == EPOCHS and config["gamma"] == RunReader(run).config()["gamma"]
    exits = [r.exit for r in recs if r.WhichOneof("record_type") == "exit"]
    assert exits and exits[-1].exit_code == 0


# --- the sink: never stalls, never fails training ------------------------------------------

class Recording:
    name, location = "fake", "memory"

    def __init__(self, block: float = 0.0, fail: bool = False):
        self.block, self.fail, self.written, self.closed = block, fail, [], False

    def write(self, batch) -> None:
        if self.fail:
            raise RuntimeError("disk\nfull")
        time.sleep(self.block)
        self.written.append(batch)

    def close(self) -> None:
        self.closed = True


def _events(n: int) -> list[EpochEnd]:
    return [_row(epoch=e) for e in range(1, n + 1)]


def test_a_sink_writes_every_event_in_order_and_closes_the_tracker() -> None:
    tracker, alerts = Recording(), []
    sink = TrackerSink(tracker, "fake", alerts.append)
    for event in _events(5):
        sink.send(event)
    assert sink.close(timeout=2.0) and tracker.closed and alerts == []
    assert [batch[0].step for batch in tracker.written] == [1, 2, 3, 4, 5]


def test_a_tracker_that_raises_gives_one_alert_and_training_goes_on() -> None:
    alerts: list[Alert] = []
    sink = TrackerSink(Recording(fail=True), "tensorboard", alerts.append, run_dir="runs/r")
    for event in _events(50):
        sink.send(event)  # never raises
    sink.close(timeout=2.0)
    assert len(alerts) == 1 and sink.failed
    alert = alerts[0]
    assert alert.code == TRACKER_FAILED and alert.level == "warning"
    assert alert.message == ("tensorboard: disk full; training goes on; "
                             "`lpc export runs/r --to tensorboard` writes it later")


def test_a_tracker_that_fails_to_open_gives_one_alert() -> None:
    alerts: list[Alert] = []

    def factory():
        raise UsageError("wandb: the wandb package is not installed: pip install 'lpc-studio[wandb]'")

    sink = TrackerSink(factory, "wandb", alerts.append)
    sink.send(_events(1)[0])
    sink.close(timeout=2.0)
    assert [a.code for a in alerts] == [TRACKER_FAILED] and "pip install" in alerts[0].message


def test_a_tracker_that_falls_behind_never_blocks_send_and_close_keeps_its_timeout() -> None:
    alerts: list[Alert] = []
    sink = TrackerSink(Recording(block=0.5), "mlflow", alerts.append, queue_size=2)
    began = time.monotonic()
    for event in _events(20):
        sink.send(event)
    assert time.monotonic() - began < 0.2
    assert [a.code for a in alerts] == [TRACKER_BEHIND] and "lpc export" in alerts[0].message
    began = time.monotonic()
    assert sink.close(timeout=0.3) is False
    assert time.monotonic() - began < 0.6
    assert [a.code for a in alerts] == [TRACKER_BEHIND]  # still one alert of that kind


# --- lpc export ----------------------------------------------------------------------

def test_export_follows_a_running_run_to_its_end(tmp_path) -> None:
    pytest.importorskip("torch.utils.tensorboard")
    run_dir, started, failure = tmp_path / "growing", threading.Event(), []

    def trainer() -> None:
        try:
            for event in train(tiny_config(robustness_samples=0), run_dir=run_dir):
                if isinstance(event, RunStarted):
                    started.set()
        except Exception as exc:  # noqa: BLE001 - reported below
            failure.append(exc)
            started.set()

    thread = threading.Thread(target=trainer)
    thread.start()
    assert started.wait(30) and not failure
    written = export_run(run_dir, "tensorboard", follow=True, poll_seconds=0.05)
    thread.join(30)
    assert written == len(RunReader(run_dir).events()) + len(MEASURED)
    assert [s.step for s in _accumulator(run_dir / "tensorboard").Scalars("loss")] == list(range(1, EPOCHS + 1))


def test_export_never_replaces_the_live_tensorboard_log_of_a_running_run(run, tmp_path) -> None:
    pytest.importorskip("torch.utils.tensorboard")
    copy = tmp_path / "copy"
    shutil.copytree(run, copy, ignore=shutil.ignore_patterns("checkpoints", "wandb", "mlflow"))
    export_run(copy, "tensorboard")  # as if it were logged live
    lock = RunLock(copy)
    lock.acquire()  # a writer trains it now
    try:
        with pytest.raises(UsageError, match="still training"):
            export_run(copy, "tensorboard")
        assert export_run(copy, "tensorboard", out=tmp_path / "elsewhere") > 0
    finally:
        lock.release()


def test_export_of_a_folder_that_is_no_run_is_bad_usage(tmp_path) -> None:
    with pytest.raises(UsageError, match="not a run directory"):
        export_run(tmp_path, "tensorboard")
    with pytest.raises(UsageError, match="choose from"):
        export_run(tmp_path, "neptune")


def test_lpc_export_prints_one_line_and_bad_choices_exit_2(run, tmp_path, capsys) -> None:
    pytest.importorskip("torch.utils.tensorboard")
    from lpc_engine.cli.app import main
    capsys.readouterr()
    assert main(["export", str(run), "--to", "tensorboard", "--out", str(tmp_path / "tb")]) == 0
    out, err = capsys.readouterr()
    assert out == "" and len(err.splitlines()) == 1 and f"to tensorboard at {tmp_path / 'tb'}" in err
    assert main(["export", str(run), "--to", "neptune"]) == 2
    err = capsys.readouterr().err
    assert "tensorboard" in err and "wandb" in err and "mlflow" in err


def test_lpc_export_says_in_one_line_when_a_tracker_fails(run, tmp_path, capsys, monkeypatch) -> None:
    pytest.importorskip("mlflow")
    pytest.importorskip("torch.utils.tensorboard")
    from lpc_engine.cli.app import main
    from lpc_engine.trackers.tb_writer import TensorBoardTracker
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "nosuchscheme://host/x")
    capsys.readouterr()
    assert main(["export", str(run), "--to", "mlflow"]) == 2  # cannot open: nothing exported
    err = capsys.readouterr().err
    assert len(err.splitlines()) == 1 and err.startswith("lpc: error: export: cannot open mlflow")

    def full(self, batch):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(TensorBoardTracker, "write", full)
    assert main(["export", str(run), "--to", "tensorboard", "--out", str(tmp_path / "tb")]) == 1
    err = capsys.readouterr().err
    assert err == "lpc: error: export to tensorboard failed: [Errno 28] No space left on device\n"
