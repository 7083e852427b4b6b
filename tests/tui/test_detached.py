"""A detached run started from the TUI (S) outlives the TUI: the TUI process
is killed with SIGKILL, the run keeps training, and a TUI reopened on the
folder shows it running and follows it; quitting says what keeps running."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from textual.widgets import DataTable

from lpc_engine.runs.control import request
from lpc_engine.runs.reader import list_runs, read_rows
from lpc_tui.app import LpcApp
from scripted import aio, until

ROOT = Path(__file__).resolve().parents[2]
# A TUI in a process of its own, driven headless: S, then it waits to be killed.
DRIVER = """
import asyncio, sys, time
from lpc_tui.app import LpcApp
async def main():
    app = LpcApp(runs_dir=sys.argv[1], flags={"dataset": "synthetic", "epochs": 3000, "batch_size": 4,
                                              "robustness_samples": 0, "device": "cpu"})
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.press("escape", "S")
        while app.followed is None:
            await pilot.pause(0.05)
        print(app.followed.dir, flush=True)
        await asyncio.sleep(600)
asyncio.run(main())
"""


def _epochs(run_dir: Path) -> int:
    return sum(r.get("event") == "epoch" for r in read_rows(run_dir / "events.jsonl"))


@pytest.mark.slow
@aio
async def test_a_detached_run_outlives_a_killed_tui_and_is_followed_again(tmp_path) -> None:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    tui = subprocess.Popen([sys.executable, "-c", DRIVER, str(tmp_path)], cwd=ROOT, env=env,
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    run_dir = Path(tui.stdout.readline().strip())
    assert run_dir.parent == tmp_path, tui.stderr.read()[-800:]
    tui.send_signal(signal.SIGKILL)
    tui.communicate(timeout=30)
    try:
        before = _epochs(run_dir)
        deadline = time.monotonic() + 60
        while _epochs(run_dir) <= before + 2:
            assert time.monotonic() < deadline, "the detached run stopped with its TUI"
            time.sleep(0.1)
        assert list_runs(tmp_path)[0]["state"] == "running"
        app = LpcApp(runs_dir=tmp_path)
        async with app.run_test(size=(80, 24)) as pilot:
            await pilot.press("r")
            await until(pilot, lambda: app.runs.query_one(DataTable).row_count == 1)
            await pilot.press("enter")
            await until(pilot, lambda: app.followed is not None and app.history.status == "running")
            seen = len(app.history.rows)
            await until(pilot, lambda: len(app.history.rows) > seen)
            await pilot.press("x")  # through the run folder: the detached process stops
            await until(pilot, lambda: app.history.status == "stopped", timeout=30)
    finally:
        if list_runs(tmp_path)[0]["state"] == "running":
            request(run_dir, "stop")


@aio
async def test_quitting_says_which_detached_runs_keep_training(tmp_path, capsys) -> None:
    app = LpcApp(runs_dir=tmp_path, flags={"dataset": "synthetic", "epochs": 3000, "batch_size": 4,
                                           "robustness_samples": 0, "device": "cpu"})
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.press("escape", "S")
        await until(pilot, lambda: app.followed is not None, timeout=60)
        run_dir = app.followed.dir
        await pilot.press("q")
    said = " ".join(capsys.readouterr().err.split())  # printed as the app closes
    assert "still training, detached" in said and run_dir.name in said
    request(run_dir, "stop")
    process = app.detached[run_dir]
    assert process.wait(timeout=60) == 1  # stopped with a checkpoint
