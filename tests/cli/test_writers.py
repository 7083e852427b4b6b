"""One writer per run, and control of runs from outside, with real processes:
`lpc stop` stops a headless run with a checkpoint and `--resume` finishes it
with an uninterrupted run's numbers; a second writer of a running run is
refused with exit 2 and writes nothing; two sweeps over one folder share its
grid, every point trained once; the states `lpc runs` shows."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from lpc_engine.runs.lock import holder
from lpc_engine.runs.reader import RunReader, list_runs, read_rows
from lpc_cli import lpc

ROOT = Path(__file__).resolve().parents[2]
SYNTH = ["--dataset", "synthetic", "--device", "cpu", "--robustness-samples", "0"]
LONG = [*SYNTH, "--epochs", "400", "--checkpoint-every", "1000"]
ENV = {**os.environ, "OMP_NUM_THREADS": "1"}


def _lpc_process(*args) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "lpc_engine.cli", *map(str, args)], cwd=ROOT, env=ENV,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _wait_for(condition, timeout: float = 90.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def _epochs(run_dir: Path) -> list[dict]:
    return [r for r in read_rows(run_dir / "events.jsonl") if r.get("event") == "epoch"]


def _started(run_dir: Path) -> int:
    return sum(r.get("event") == "started" for r in read_rows(run_dir / "events.jsonl"))


def test_lpc_stop_stops_a_headless_run_and_resume_finishes_it_exactly(tmp_path, capsys, helpers) -> None:
    run_dir = tmp_path / "r"
    proc = _lpc_process("run", *LONG, "--runs-dir", tmp_path, "--name", "r", "--json")
    _wait_for(lambda: len(_epochs(run_dir)) >= 3)
    assert list_runs(tmp_path)[0]["state"] == "running"
    code, _, err = lpc(capsys, "stop", run_dir)
    assert code == 0 and "asked" in err
    out, _ = proc.communicate(timeout=60)
    assert proc.returncode == 1 and json.loads(out)["status"] == "stopped"
    assert RunReader(run_dir).summary()["status"] == "stopped" and holder(run_dir) is None
    assert list(run_dir.glob("checkpoints/*.pt")) and list_runs(tmp_path)[0]["state"] == "stopped"
    stopped_at = len(_epochs(run_dir))
    assert 3 <= stopped_at < 400
    code, _, err = lpc(capsys, "run", "--resume", "--runs-dir", tmp_path, "--name", "r", "--json")
    assert code == 0, err
    straight = tmp_path / "straight"
    assert lpc(capsys, "run", *LONG, "--runs-dir", tmp_path, "--name", "straight")[0] == 0
    got = [helpers.without_timing(r) for r in _epochs(run_dir)]
    want = [helpers.without_timing(r) for r in _epochs(straight)]
    assert got == want and len(got) == 400


def test_a_second_writer_of_a_running_run_is_refused_and_writes_nothing(tmp_path, capsys) -> None:
    run_dir = tmp_path / "r"
    proc = _lpc_process("run", *LONG, "--runs-dir", tmp_path, "--name", "r")
    try:
        _wait_for(lambda: len(_epochs(run_dir)) >= 1)
        writer = holder(run_dir)
        for extra in (["--resume"], ["--overwrite"], []):
            code, out, err = lpc(capsys, "run", *SYNTH, "--runs-dir", tmp_path, "--name", "r", *extra)
            assert code == 2 and out == "" and len(err.strip().splitlines()) == 1, (extra, err)
            assert ("being written by pid" in err) if extra else ("already exists" in err)
        assert holder(run_dir) == writer or holder(run_dir).pid == writer.pid
        assert _started(run_dir) == 1 and not (run_dir / "summary.json").exists()
    finally:
        proc.terminate()
        proc.communicate(timeout=60)
    assert proc.returncode == 1 and RunReader(run_dir).summary()["status"] == "stopped"


def test_a_killed_writer_leaves_a_stale_run_that_resume_takes_over(tmp_path, capsys) -> None:
    run_dir = tmp_path / "r"
    proc = _lpc_process("run", *SYNTH, "--epochs", "400", "--runs-dir", tmp_path, "--name", "r")
    _wait_for(lambda: len(_epochs(run_dir)) >= 2)
    proc.kill()
    proc.communicate(timeout=30)
    assert list_runs(tmp_path)[0]["state"] == "stale"
    code, _, err = lpc(capsys, "run", "--resume", "--runs-dir", tmp_path, "--name", "r", "--epochs", "12")
    assert code == 0, err
    alerts = [r for r in read_rows(run_dir / "events.jsonl") if r.get("code") == "lock_taken_over"]
    assert len(alerts) == 1 and f"pid {proc.pid}" in alerts[0]["message"]
    assert list_runs(tmp_path)[0]["state"] == "finished"


def test_lpc_stop_of_a_run_that_is_not_running_is_exit_2(tmp_path, capsys) -> None:
    assert lpc(capsys, "run", *SYNTH, "--epochs", "1", "--runs-dir", tmp_path, "--name", "done")[0] == 0
    code, _, err = lpc(capsys, "stop", tmp_path / "done")
    assert code == 2 and "is not running" in err
    code, _, err = lpc(capsys, "stop", tmp_path)
    assert code == 2 and "not a run directory" in err


@pytest.mark.slow
def test_two_sweeps_over_one_folder_train_every_point_once(tmp_path) -> None:
    args = ["sweep", "--presets", "lpc,nopen", "--seeds", "0,1,2", "--dataset", "synthetic", "--epochs", "3",
            "--set", "robustness_samples=0", "--runs-dir", tmp_path, "--json"]
    sweeps = [_lpc_process(*args) for _ in range(2)]
    outs = [p.communicate(timeout=300) for p in sweeps]
    assert [p.returncode for p in sweeps] == [0, 0], [o[1][-500:] for o in outs]
    results = [json.loads(o[0]) for o in outs]
    runs = sorted(d for d in (tmp_path / "sweep-synthetic").iterdir() if not d.name.startswith("."))
    assert len(runs) == 6
    for run_dir in runs:
        assert _started(run_dir) == 1, run_dir.name  # trained once, by one of the two
        assert RunReader(run_dir).summary()["status"] == "finished"
    taken = [set(r["taken"]) for r in results]
    assert not taken[0] & taken[1] and all(len(t) < 6 for t in taken)
