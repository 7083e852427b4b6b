"""Pilot tests of LpcApp: configure -> start -> events -> finish -> results
on a scripted stream, pause, stop, resume, the merge-alert policy, the runs
pane, export, errors in the worker, quitting during a run; and one short
real run on `synthetic`."""

from __future__ import annotations

import io
import json
import shutil
import time

import pytest
from rich.console import Console
from textual.widgets import Button, ContentSwitcher, Input, Label, Static

from lpc_engine import train
from lpc_engine.events import EpochEnd
from lpc_tui.app import LpcApp
from lpc_tui.screens.compare import CompareScreen
from lpc_tui.screens.dialogs import ConfirmQuit, HelpScreen
from lpc_tui.screens.runs import RunsPane
from scripted import ScriptedTrain, aio, until, write_saved_run

SIZE = (80, 24)
SYNTH = {"dataset": "synthetic"}


def text_of(app, selector: str) -> str:
    """What a Static shows, as plain text (rendered 100 columns wide)."""
    content = app.query_one(selector, Static).content
    console = Console(width=100, record=True, file=io.StringIO())
    console.print(content)
    return console.export_text()


def pane(app) -> str:
    return app.query_one(ContentSwitcher).current


def names(app) -> list[str]:
    return [n.message for n in app._notifications]


@aio
async def test_configure_start_events_finish_results(tmp_path) -> None:
    script = ScriptedTrain(epochs=6)
    app = LpcApp(runs_dir=tmp_path, flags=SYNTH, train_fn=script)
    async with app.run_test(size=SIZE) as pilot:
        assert pane(app) == "configure"
        await pilot.press("s")
        await until(pilot, lambda: app.history.status == "finished")
        await pilot.pause(0.2)
        assert pane(app) == "results"
        h = app.history
        assert [r["epoch"] for r in h.rows] == [1, 2, 3, 4, 5, 6]
        assert h.metrics["separation_ratio"] == 12.5 and h.robustness["robustness_mean"] == 0.31
        results = text_of(app, "#results-body")
        assert "Table I" in results and "paper LPC" in results and "12.5" in results
        assert "0.31" in results  # the robustness table
        run_dir = tmp_path / h.name
        assert h.run_dir == str(run_dir) and h.name.startswith("lpc-synthetic-s0-")


@aio
async def test_invalid_field_is_marked_and_start_refused(tmp_path) -> None:
    script = ScriptedTrain()
    app = LpcApp(runs_dir=tmp_path, flags=SYNTH, train_fn=script)
    async with app.run_test(size=SIZE) as pilot:
        gamma_max = app.query_one("#field-gamma_max", Input)
        gamma_max.value = "1e-5"  # below gamma_init
        await pilot.pause()
        error = app.query_one("#error-gamma_max", Label)
        assert error.display and "must be >= gamma_init" in str(error.render())
        assert gamma_max.has_class("invalid") and app.query_one("#start", Button).disabled
        app.set_focus(None)
        await pilot.press("s")
        await pilot.pause()
        assert app.job is None and not script.played
        assert any("fix the fields" in n for n in names(app))
        gamma_max.value = "100"
        await pilot.pause()
        assert not error.display and not app.query_one("#start", Button).disabled


@aio
async def test_untouched_fields_follow_the_dataset_profile(tmp_path) -> None:
    app = LpcApp(runs_dir=tmp_path, train_fn=ScriptedTrain())
    async with app.run_test(size=SIZE) as pilot:
        epochs = app.query_one("#field-epochs", Input)
        assert epochs.value == "700"  # the digits profile
        app.query_one("#field-profile").value = "quick"
        await pilot.pause()
        assert epochs.value == "100"  # the digits quick look
        app.query_one("#field-profile").value = "default"
        await pilot.pause()
        app.query_one("#field-lr", Input).value = "0.001"  # a user edit
        await pilot.pause()
        app.query_one("#field-dataset").value = "cifar10"
        await pilot.pause()
        assert epochs.value == "800"  # the paper's recipe came along
        assert app.query_one("#field-gamma_max", Input).value == "1e6"
        assert app.query_one("#field-lr", Input).value == "0.001"  # the edit stays
        assert "read from a folder" in text_of(app, "#error-data_dir")  # cifar10 is not embedded
        app.query_one("#field-data_dir", Input).value = str(tmp_path)
        await pilot.pause()
        cfg = app.query_one("#configure").cfg
        assert cfg.optim.lr == 0.001 and cfg.epochs == 800 and cfg.model.backbone == "resnet18"


@aio
async def test_pause_resume_and_stop(tmp_path) -> None:
    script = ScriptedTrain(epochs=50, hold_after=2, epoch_seconds=0.05)
    app = LpcApp(runs_dir=tmp_path, flags=SYNTH, train_fn=script)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("s")
        await until(pilot, lambda: app.history.epoch == 2)
        await pilot.press("p")
        assert app.job.paused
        script.release.set()
        await pilot.pause(0.2)
        assert app.history.epoch == 2  # paused: nothing more arrives
        assert "paused" in text_of(app, "#status")
        await pilot.press("p")
        await until(pilot, lambda: app.history.epoch > 2)
        await pilot.press("x")
        await until(pilot, lambda: app.history.status == "stopped")
        assert app.history.epoch < 50 and not app.active


@pytest.mark.parametrize("policy, paused", [("warn", False), ("pause", True)])
@aio
async def test_merge_alert_toast_log_and_policy(tmp_path, policy, paused) -> None:
    script = ScriptedTrain(epochs=6, alert_at=3, hold_after=4)
    app = LpcApp(runs_dir=tmp_path, flags={**SYNTH, "merge_policy": policy}, train_fn=script)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("s")
        await until(pilot, lambda: app.history.alerts)
        await pilot.pause(0.2)
        assert any("merging at the origin" in n for n in names(app))
        assert app.job.paused is paused
        assert ("paused" in text_of(app, "#status")) is paused
        script.release.set()
        if paused:
            await pilot.press("p")
        await until(pilot, lambda: app.history.status == "finished")


@aio
async def test_worker_exception_is_shown_and_the_app_lives(tmp_path) -> None:
    app = LpcApp(runs_dir=tmp_path, flags=SYNTH, train_fn=ScriptedTrain(fail_at=3))
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("s")
        await until(pilot, lambda: app.history.status == "error")
        await pilot.pause(0.2)
        assert "scripted failure in the worker" in app.history.error
        assert any("scripted failure" in n for n in names(app))
        await pilot.press("c")  # still responsive
        assert pane(app) == "configure" and app.is_running


@aio
async def test_quit_during_a_run_asks_then_stops_it(tmp_path) -> None:
    script = ScriptedTrain(epochs=50, hold_after=2)
    app = LpcApp(runs_dir=tmp_path, flags=SYNTH, train_fn=script)
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("s")
        await until(pilot, lambda: app.history.epoch == 2)
        await pilot.press("q")
        assert isinstance(app.screen, ConfirmQuit)
        await pilot.press("n")
        assert app.active and not isinstance(app.screen, ConfirmQuit)
        await pilot.press("q")
        await pilot.press("y")
        await until(pilot, lambda: not app.is_running)
    assert app.history.status == "stopped"
    assert script.played[-2].kind == "checkpoint"  # stopped with a checkpoint first


@aio
async def test_help_screen_lists_the_keys(tmp_path) -> None:
    app = LpcApp(runs_dir=tmp_path, train_fn=ScriptedTrain())
    async with app.run_test(size=SIZE) as pilot:
        app.set_focus(None)
        await pilot.press("question_mark")
        assert isinstance(app.screen, HelpScreen)
        shown = str(app.screen.query_one(Static).render())
        for key in ("start", "detached", "pause", "stop", "export", "quit", "runs", "monitor", "configure"):
            assert key in shown
        await pilot.press("escape")
        assert not isinstance(app.screen, HelpScreen)


@aio
async def test_runs_pane_lists_opens_and_overlays(tmp_path) -> None:
    write_saved_run(tmp_path, "alpha", 5)
    write_saved_run(tmp_path, "beta", 8, scale=0.5, status="stopped")
    app = LpcApp(runs_dir=tmp_path, train_fn=ScriptedTrain())
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("r")
        runs = app.query_one(RunsPane)
        table = runs.query_one("#runs-table")
        assert table.row_count == 2
        assert runs.opened is not None and runs.shown_names() == [runs.opened]
        await pilot.press("space", "down", "space")
        assert sorted(runs.marked) == ["alpha", "beta"]
        acc = runs.query_one("#runs-acc")
        assert sorted(s.label for s in acc.series) == ["alpha", "beta"]
        beta = next(s for s in acc.series if s.label == "beta")
        assert len(beta.xs) == 8
        compare = text_of(app, "#runs-compare")
        assert "alpha" in compare and "beta" in compare and "stopped" in compare
        await pilot.press("v")  # the Compare view: the report of the marked runs
        assert isinstance(app.screen, CompareScreen)
        console = Console(width=100, record=True, file=io.StringIO())
        console.print(app.screen.query_one(Static).content)
        report = console.export_text()
        assert "Table I" in report and "Table IV" in report and "LPC" in report
        assert "12.5" in report and "left out: beta (stopped)" in report
        await pilot.press("escape")
        assert not isinstance(app.screen, CompareScreen)


@aio
async def test_a_sweeps_folder_opens_closes_and_marks_all_its_runs(tmp_path) -> None:
    write_saved_run(tmp_path, "alpha", 5, mtime=1.9e9)
    for i in range(3):
        write_saved_run(tmp_path / "sweep-synthetic", f"lpc-s{i}", 4 + i, mtime=1.6e9 + i)
    app = LpcApp(runs_dir=tmp_path, train_fn=ScriptedTrain())
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("r")
        runs = app.query_one(RunsPane)
        table = runs.query_one("#runs-table")
        keys = lambda: [str(k.value) for k in table.rows]  # noqa: E731
        assert keys() == ["alpha", "sweep-synthetic/"]  # the folder starts closed
        await pilot.press("down", "enter")
        assert keys() == ["alpha", "sweep-synthetic/", "sweep-synthetic/lpc-s2", "sweep-synthetic/lpc-s1",
                          "sweep-synthetic/lpc-s0"]
        assert app.switcher.current == "runs" and app.followed is None  # opening a folder follows nothing
        await pilot.press("space")  # on the folder: all its runs
        assert sorted(runs.marked) == [f"sweep-synthetic/lpc-s{i}" for i in range(3)]
        assert sorted(len(s.xs) for s in runs.query_one("#runs-acc").series) == [4, 5, 6]
        await pilot.press("down")  # lpc-s2; a filter that hides it leaves the cursor on its folder
        app.query_one("#runs-filter", Input).value = "lpc-s1"
        await pilot.pause()
        assert keys() == ["sweep-synthetic/", "sweep-synthetic/lpc-s1"] and runs._cursor_key() == "sweep-synthetic/"
        await pilot.press("enter")  # the filter holds the folder open: Enter changes nothing
        app.query_one("#runs-filter", Input).value = ""
        await pilot.pause()
        assert runs.open_groups == {"sweep-synthetic"} and len(keys()) == 5
        shutil.rmtree(tmp_path / "sweep-synthetic" / "lpc-s0")  # deleted: no longer marked
        await pilot.press("g")
        assert sorted(runs.marked) == ["sweep-synthetic/lpc-s1", "sweep-synthetic/lpc-s2"]
        assert len(runs.query_one("#runs-acc").series) == 2 and "lpc-s0" not in text_of(app, "#runs-compare")
        await pilot.press("up", "up", "down")  # back on the folder
        await pilot.press("R")  # a folder is not a run to resume
        await pilot.pause()
        assert app.job is None and any("R resumes one run" in n for n in names(app))
        await pilot.press("enter")
        assert keys() == ["alpha", "sweep-synthetic/"]
        await pilot.press("space")
        assert runs.marked == []


@aio
async def test_runs_pane_reads_a_run_again_once_it_moved_on(tmp_path) -> None:
    write_saved_run(tmp_path, "grow", 3)
    app = LpcApp(runs_dir=tmp_path, train_fn=ScriptedTrain())
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("r")
        runs = app.query_one(RunsPane)
        assert runs.opened == "grow" and len(runs.query_one("#runs-acc").series[0].xs) == 3
        shutil.rmtree(tmp_path / "grow")
        write_saved_run(tmp_path, "grow", 12)  # it trained on, and ended
        runs._refresh()  # what the pane does every REFRESH_SECONDS
        await until(pilot, lambda: len(runs.query_one("#runs-acc").series[0].xs) == 12)
        table = runs.query_one("#runs-table")
        assert table.get_cell("grow", "epochs") == "12/12"
        assert table.columns["epochs"].content_width >= len("12/12")  # not cut to the old width
        await pilot.press("slash", "x", "escape")  # Esc leaves the filter for the table
        assert app.focused is table


@aio
async def test_brackets_page_the_nodes_wherever_the_monitor_focus_is(tmp_path, monkeypatch) -> None:
    from lpc_tui.widgets.histograms import NodeHistograms
    monkeypatch.setattr(NodeHistograms, "per_page", lambda self: 3)  # 8 nodes: 3 pages
    write_saved_run(tmp_path, "alpha", 4)
    app = LpcApp(runs_dir=tmp_path, train_fn=ScriptedTrain())
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("r", "enter")
        await until(pilot, lambda: app.followed is not None and app.history.latents is not None)
        await pilot.press("2")
        nodes = app.query_one("#nodes", NodeHistograms)
        assert app.focused is not nodes
        await pilot.press("right_square_bracket", "right_square_bracket")
        assert nodes.page == 2
        await pilot.press("left_square_bracket")
        assert nodes.page == 1


@aio
async def test_resume_of_a_finished_run_says_so_and_writes_nothing(tmp_path) -> None:
    run_dir = write_saved_run(tmp_path, "done", 3)
    before = (run_dir / "events.jsonl").read_bytes()
    app = LpcApp(runs_dir=tmp_path, train_fn=ScriptedTrain())
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("r", "R")
        await pilot.pause()
        assert app.job is None and any("is finished: nothing to resume" in n for n in names(app))
    assert (run_dir / "events.jsonl").read_bytes() == before


@aio
async def test_export_writes_csv_and_svg(tmp_path) -> None:
    app = LpcApp(runs_dir=tmp_path, flags=SYNTH, train_fn=ScriptedTrain(epochs=4))
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("s")
        await until(pilot, lambda: app.history.status == "finished")
        await pilot.press("e")
        await pilot.pause()
    run_dir = tmp_path / app.history.name
    lines = (run_dir / "epochs.csv").read_text().splitlines()
    assert lines[0].startswith("epoch,loss,ce,penalty,gamma") and len(lines) == 5
    assert list(run_dir.glob("screen-*.svg"))


@aio
async def test_a_taken_run_name_is_refused(tmp_path) -> None:
    write_saved_run(tmp_path, "taken", 2)
    script = ScriptedTrain()
    app = LpcApp(runs_dir=tmp_path, flags=SYNTH, train_fn=script)
    async with app.run_test(size=SIZE) as pilot:
        app.query_one("#run-name", Input).value = "taken"
        app.set_focus(None)
        await pilot.press("s")
        await pilot.pause()
        assert app.job is None and any("already exists" in n for n in names(app))


def stopping_after(epoch: int):
    """The real engine, asked to stop right after `epoch` as `x` would ask
    (deterministic: a synthetic epoch is faster than a key press)."""
    def train_fn(cfg, control, run_dir=None, resume=False, overwrite=False):
        for event in train(cfg, control, run_dir=run_dir, resume=resume, overwrite=overwrite):
            yield event
            if isinstance(event, EpochEnd) and event.epoch == epoch and not resume:
                control.stop.set()
    return train_fn


@aio
async def test_real_synthetic_run_stop_and_resume_from_the_runs_pane(tmp_path) -> None:
    """The real engine in the worker: start, stop after epoch 2 (a
    checkpoint is saved), resume from the runs pane, finish with every epoch once."""
    flags = {**SYNTH, "epochs": 20, "robustness_samples": 20, "device": "cpu"}
    app = LpcApp(runs_dir=tmp_path, flags=flags, train_fn=stopping_after(2))
    async with app.run_test(size=SIZE) as pilot:
        app.query_one("#run-name", Input).value = "real"
        app.set_focus(None)
        await pilot.press("s")
        await until(pilot, lambda: app.history.status not in ("starting", "running") and not app.active)
        assert app.history.status == "stopped" and app.history.epoch == 2
        assert list((tmp_path / "real" / "checkpoints").glob("epoch-000002-*.pt"))
        await pilot.press("r")
        runs = app.query_one(RunsPane)
        assert runs.query_one("#runs-table").row_count == 1
        await pilot.press("R")
        await until(pilot, lambda: app.history.status not in ("idle", "starting", "running"), timeout=60)
        assert app.history.status == "finished", app.history.error
    rows = [json.loads(line) for line in (tmp_path / "real" / "events.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in rows if r["event"] == "epoch"] == list(range(1, 21))
    assert json.loads((tmp_path / "real" / "summary.json").read_text())["status"] == "finished"
    assert app.history.robustness["samples"] == 20
    assert [r["epoch"] for r in app.history.rows] == list(range(1, 21))  # disk rows + resumed ones


@aio
async def test_a_long_run_redraws_charts_at_most_ten_times_a_second(tmp_path, monkeypatch) -> None:
    """800 epochs arriving as fast as the worker can post them: every epoch
    reaches the history, but the charts are rebuilt only on the paced ticks."""
    from lpc_tui.widgets.plots import SeriesPlot
    builds: list[float] = []
    original = SeriesPlot._build
    monkeypatch.setattr(SeriesPlot, "_build", lambda self: builds.append(time.monotonic()) or original(self))
    app = LpcApp(runs_dir=tmp_path, flags=SYNTH, train_fn=ScriptedTrain(epochs=800))
    async with app.run_test(size=SIZE) as pilot:
        began = time.monotonic()
        await pilot.press("s")
        await until(pilot, lambda: app.history.status == "finished")
        elapsed = time.monotonic() - began
    assert len(app.history.rows) == 800
    charts = 4
    assert len(builds) <= charts * (elapsed / 0.1 + 3)


@aio
async def test_cifar10_from_the_tui_with_a_data_folder(tmp_path, monkeypatch, helpers) -> None:
    """The README's `lpc-tui --dataset cifar10 --preset lpc-narrow`: without a
    data dir the form says so (no exception class); with one, a real run on
    small CIFAR-10 files in their real format trains and finishes."""
    import numpy as np
    import torchvision.datasets.cifar as cifar

    monkeypatch.setattr(cifar, "check_integrity", lambda *args, **kwargs: True)  # test files, not the release's
    helpers.write_cifar10(tmp_path / "data", np.random.default_rng(0), per_batch=20)  # 2+ a class
    flags = {"dataset": "cifar10", "preset": "lpc-narrow", "backbone": "cnn", "epochs": 1,
             "robustness_samples": 4, "device": "cpu"}
    app = LpcApp(runs_dir=tmp_path / "runs", flags=flags)
    async with app.run_test(size=SIZE) as pilot:
        error = text_of(app, "#error-data_dir")
        assert "cifar10 is read from a folder" in error and "Error" not in error
        assert app.query_one("#start", Button).disabled
        app.query_one("#field-data_dir", Input).value = str(tmp_path / "data")
        await pilot.pause()
        assert not app.query_one("#start", Button).disabled
        await pilot.press("escape", "s")
        await until(pilot, lambda: app.history.status not in ("idle", "starting", "running"), timeout=60)
        assert app.history.status == "finished", app.history.error
    saved = json.loads(next((tmp_path / "runs").glob("*/config.json")).read_text())
    assert saved["data"]["data_dir"] == str((tmp_path / "data").resolve())


@aio
async def test_the_nodes_pane_steps_back_through_the_measured_epochs(tmp_path) -> None:
    """A finished run opened from the store: its last measured epoch's nodes and
    codebook, then (,) an earlier one and (.) back, read from its latents/."""
    from lpc_engine.runs.latents import write_latent_sample
    from scripted import latent_event

    run_dir = write_saved_run(tmp_path, "done", 6)
    write_latent_sample(run_dir, latent_event(3))  # an earlier measured epoch
    app = LpcApp(runs_dir=tmp_path, train_fn=ScriptedTrain())
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("r")
        await pilot.pause()
        await pilot.press("enter")
        await until(pilot, lambda: app.followed is not None)
        assert app.history.latents.epoch == 6 and app.history.latents.codes
        await pilot.press("2", "comma")
        await pilot.pause()
        assert app.history.latents.epoch == 3
        assert "epoch 3" in str(app.monitor.query_one("#nodes").render())
        await pilot.press("full_stop")
        await pilot.pause()
        assert app.history.latents.epoch == 6
