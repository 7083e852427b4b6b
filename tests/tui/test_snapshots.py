"""Snapshots of the app at fixed terminal sizes (80x24, the SSH minimum, and
120x40) on a scripted engine: configure, monitor mid-run, results, runs
with an overlay, help. Update after a deliberate change with
`pytest tests/tui --snapshot-update` and look at the SVGs."""

from __future__ import annotations


import os

import pytest
from textual.widgets import Input

from lpc_tui.app import LpcApp
from scripted import ScriptedTrain, until, write_saved_run

SIZES = [(80, 24), (120, 40)]


def started(app: LpcApp, until_epoch: int | None = None, status: str | None = None):
    """run_before: name the run, start it, wait for an epoch or a status, let the tick draw."""
    async def run_before(pilot) -> None:
        app.query_one("#run-name", Input).value = "demo"
        app.set_focus(None)
        await pilot.press("s")
        await until(pilot, lambda: (until_epoch is not None and app.history.epoch >= until_epoch
                                    and app.history.latents is not None)
                    or (status is not None and app.history.status == status))
        app.redraw(force=True)  # the monitor paces its charts by their cost; draw now
        await pilot.pause(0.3)
    return run_before


@pytest.mark.parametrize("size", SIZES)
def test_configure_pane(snap_compare, tmp_path, size) -> None:
    assert snap_compare(LpcApp(runs_dir=tmp_path, train_fn=ScriptedTrain()), terminal_size=size)


@pytest.mark.parametrize("size", SIZES)
def test_monitor_mid_run(snap_compare, tmp_path, request, size) -> None:
    script = ScriptedTrain(epochs=12, hold_after=6)
    request.addfinalizer(script.release.set)
    app = LpcApp(runs_dir=tmp_path, flags={"dataset": "synthetic"}, train_fn=script)
    assert snap_compare(app, terminal_size=size, run_before=started(app, until_epoch=6))


def test_monitor_node_histograms(snap_compare, tmp_path, request) -> None:
    script = ScriptedTrain(epochs=12, hold_after=6)
    request.addfinalizer(script.release.set)
    app = LpcApp(runs_dir=tmp_path, flags={"dataset": "synthetic"}, train_fn=script)
    before = started(app, until_epoch=6)

    async def nodes(pilot) -> None:
        await before(pilot)
        await pilot.press("2")
        await pilot.pause(0.2)
    assert snap_compare(app, terminal_size=(80, 24), run_before=nodes)


@pytest.mark.parametrize("size", SIZES)
def test_results_pane(snap_compare, tmp_path, size) -> None:
    app = LpcApp(runs_dir=tmp_path, flags={"dataset": "synthetic"}, train_fn=ScriptedTrain(epochs=6))
    assert snap_compare(app, terminal_size=size, run_before=started(app, status="finished"))


@pytest.mark.parametrize("size", SIZES)
def test_runs_pane_with_overlay(snap_compare, tmp_path, size) -> None:
    write_saved_run(tmp_path, "alpha", 5, mtime=1.7e9)
    write_saved_run(tmp_path, "beta", 8, scale=0.5, status="stopped", mtime=1.8e9)
    app = LpcApp(runs_dir=tmp_path, train_fn=ScriptedTrain())

    async def overlay(pilot) -> None:
        await pilot.press("r")
        await pilot.pause()
        await pilot.press("space", "down", "space")  # beta (newest), then alpha
        await pilot.pause(0.2)
    assert snap_compare(app, terminal_size=size, run_before=overlay)


@pytest.mark.parametrize("size", SIZES)
def test_help_screen(snap_compare, tmp_path, size) -> None:
    app = LpcApp(runs_dir=tmp_path, train_fn=ScriptedTrain())

    async def help_screen(pilot) -> None:
        app.set_focus(None)
        await pilot.press("question_mark")
        await pilot.pause()
    assert snap_compare(app, terminal_size=size, run_before=help_screen)


def test_runs_tree_of_a_store_with_a_sweep(snap_compare, tmp_path) -> None:
    """Runs at any depth, a sweep's under its folder's row (opened with
    Enter), with their states; one whose writer died (a lock file naming a
    process that is gone) is stale."""
    write_saved_run(tmp_path, "alpha", 5, mtime=1.7e9)
    for i, status in enumerate(("finished", "stopped", "finished")):
        write_saved_run(tmp_path / "sweep-synthetic", f"lpc-s{i}", 6, scale=1 - 0.1 * i, status=status,
                        mtime=1.6e9 + i)
    dead = write_saved_run(tmp_path / "sweep-synthetic", "nopen-s0", 4, scale=0.6, mtime=1.5e9)
    (dead / "summary.json").unlink()
    (dead / "lock").write_text('{"pid": 999999999, "host": "%s", "started": 1.5e9}' % os.uname().nodename)
    app = LpcApp(runs_dir=tmp_path, train_fn=ScriptedTrain())

    async def runs(pilot) -> None:
        await pilot.press("r")
        await pilot.pause(0.2)
        await pilot.press("down", "enter")  # alpha, then the sweep's folder: open it
        await pilot.pause(0.2)
    assert snap_compare(app, terminal_size=(80, 24), run_before=runs)


def test_a_followed_run_in_the_nodes_pane(snap_compare, tmp_path) -> None:
    """Enter on a run another process wrote: the monitor follows it from its
    folder, node histograms from its latents on disk."""
    write_saved_run(tmp_path / "sweep-synthetic", "lpc-s0", 6, mtime=1.6e9)
    app = LpcApp(runs_dir=tmp_path, train_fn=ScriptedTrain())

    async def follow(pilot) -> None:
        await pilot.press("r")
        await pilot.pause(0.2)
        await pilot.press("enter", "down", "enter")  # open the sweep's folder, follow its run
        await until(pilot, lambda: app.followed is not None)
        await pilot.press("2")
        await pilot.pause(0.3)
    assert snap_compare(app, terminal_size=(80, 24), run_before=follow)
