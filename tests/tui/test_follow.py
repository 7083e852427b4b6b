"""The TUI watches runs it did not start, with real processes: a headless
`lpc sweep` in its own process shows in the runs pane with live states;
Enter follows its running run in the monitor (curves growing, node
histograms from the latents on disk); x stops the headless process with a
checkpoint; the sweep reports the run as stopped and a rerun resumes it."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from textual.widgets import DataTable

from lpc_engine.runs.reader import RunReader, read_rows
from lpc_tui.app import LpcApp
from scripted import aio, until

ROOT = Path(__file__).resolve().parents[2]
# batch 4: about 0.1 s an epoch, so the run is still going when x is pressed
SWEEP = ["sweep", "--presets", "lpc,nopen", "--seeds", "0", "--dataset", "synthetic", "--jobs", "1",
         "--set", "robustness_samples=0", "--set", "batch_size=4", "--set", "metrics_every=2",
         "--set", "latent_sample_size=64", "--json"]


def _sweep(runs: Path, epochs: int) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "lpc_engine.cli", *SWEEP, "--epochs", str(epochs),
                             "--runs-dir", str(runs)], cwd=ROOT, env={**os.environ, "OMP_NUM_THREADS": "1"},
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _state(app: LpcApp, name: str) -> str | None:
    table = app.runs.query_one(DataTable)
    keys = [str(k.value) for k in table.rows]
    return str(table.get_cell(name, "state")) if name in keys else None


@pytest.mark.slow
@aio
async def test_the_tui_follows_a_headless_sweep_and_stops_its_run(tmp_path) -> None:
    name = "sweep-synthetic/lpc-s0"
    sweep = _sweep(tmp_path, 2000)
    try:
        app = LpcApp(runs_dir=tmp_path)
        async with app.run_test(size=(80, 24)) as pilot:
            await pilot.press("r")
            # The sweep's folder is one closed row, refreshed by itself; Enter opens it.
            await until(pilot, lambda: _state(app, "sweep-synthetic/") == "running", timeout=60)
            table = app.runs.query_one(DataTable)
            table.move_cursor(row=[str(k.value) for k in table.rows].index("sweep-synthetic/"))
            await pilot.press("enter")
            await until(pilot, lambda: _state(app, name) == "running")
            table.move_cursor(row=[str(k.value) for k in table.rows].index(name))
            await pilot.press("enter")
            await until(pilot, lambda: app.followed is not None and len(app.history.rows) >= 4)
            assert app.switcher.current == "monitor" and app.history.status == "running"
            seen = len(app.history.rows)
            await until(pilot, lambda: len(app.history.rows) > seen)  # it grows as the sweep trains
            await until(pilot, lambda: app.history.latents is not None)  # read from the run's latents/
            assert app.history.latents.z.shape == (64, 8) and app.history.latents.node_means
            await pilot.press("x")
            out, err = sweep.communicate(timeout=60)
            await until(pilot, lambda: app.history.status == "stopped", timeout=10)
        assert sweep.returncode == 1, err[-800:]
        assert json.loads(out)["stopped"] == ["lpc-s0"]
    finally:
        if sweep.poll() is None:
            sweep.kill()
    run_dir = tmp_path / name
    assert RunReader(run_dir).summary()["status"] == "stopped" and list(run_dir.glob("checkpoints/*.pt"))
    done = [r["epoch"] for r in read_rows(run_dir / "events.jsonl") if r.get("event") == "epoch"][-1]
    assert done < 60
    again = _sweep(tmp_path, 60)  # the same sweep, shorter: it resumes the stopped run
    out, err = again.communicate(timeout=240)
    assert again.returncode == 0, err[-800:]
    rows = read_rows(run_dir / "events.jsonl")
    assert [r["epoch"] for r in rows if r.get("event") == "epoch"] == list(range(1, 61))
    assert sum(r.get("event") == "started" for r in rows) == 2  # the first session, then the resume
