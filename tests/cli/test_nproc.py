"""`lpc run --nproc N`, as a user runs it: a run trained by 2 gloo
processes on the CPU continues on 1 and again on 2 with the numbers of an
uninterrupted 1-process run (within the tolerance test_distributed.py
states), only rank 0 writes, SIGTERM stops every process with one
checkpoint, and bad usage exits 2 with one line."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from lpc_cli import lpc as lpc_here
from lpc_engine.cli.nproc import _threads
from lpc_engine.errors import UsageError
from lpc_engine.cli.processes import _wait
from lpc_engine.runs.store import RunStore, load_checkpoint, read_events

SYNTH = ["--dataset", "synthetic", "--device", "cpu", "--robustness-samples", "0",
         "--batch-size", "75"]
REL = 1e-4  # test_distributed.py


def lpc(*args, timeout: float = 120) -> subprocess.CompletedProcess:
    """`lpc ARGS` in a process of its own, as a user runs it."""
    env = {**os.environ, "LPC_DIST_TIMEOUT_MINUTES": "2", "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, "-m", "lpc_engine.cli", *map(str, args)],
                          capture_output=True, text=True, timeout=timeout, env=env)


def epoch_rows(run_dir: Path) -> list[dict]:
    return [r for r in read_events(run_dir / "events.jsonl") if r["event"] == "epoch"]


def test_a_run_moves_between_2_processes_and_1_with_the_numbers_of_one(tmp_path: Path,
                                                                        capsys) -> None:
    runs = ["--runs-dir", tmp_path]
    assert lpc_here(capsys, "run", *SYNTH, *runs, "--epochs", 4, "--name", "one")[0] == 0
    two = lpc("run", *SYNTH, *runs, "--epochs", 2, "--name", "r", "--nproc", 2, "--json")
    assert two.returncode == 0, two.stderr
    summary = json.loads(two.stdout)  # one JSON object, from rank 0 alone
    assert summary["status"] == "finished" and summary["epochs_done"] == 2
    assert "training on 2 processes (cpu)" in two.stderr
    assert lpc_here(capsys, "run", *runs, "--resume", "--name", "r", "--epochs", 3)[0] == 0
    again = lpc("run", *runs, "--resume", "--name", "r", "--epochs", 4, "--nproc", 2)
    assert again.returncode == 0, again.stderr
    events = read_events(tmp_path / "r" / "events.jsonl")
    assert [e["processes"] for e in events if e["event"] == "started"] == [2, 1, 2]
    got, want = epoch_rows(tmp_path / "r"), epoch_rows(tmp_path / "one")
    assert [r["epoch"] for r in got] == [1, 2, 3, 4]  # each epoch once
    for row, ref in zip(got, want):
        for key in ("loss", "ce", "penalty", "train_acc", "test_acc", "latent_norm_mean"):
            assert row[key] == pytest.approx(ref[key], rel=REL), (row["epoch"], key)


def test_sigterm_stops_every_process_with_one_checkpoint(tmp_path: Path) -> None:
    run_dir = tmp_path / "s"
    env = {**os.environ, "LPC_DIST_TIMEOUT_MINUTES": "2"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "lpc_engine.cli", "run", "--dataset", "digits", "--device", "cpu",
         "--epochs", "200", "--runs-dir", str(tmp_path), "--name", "s", "--nproc", "2", "--json"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    deadline = time.monotonic() + 60
    while not (run_dir / "events.jsonl").exists() or not epoch_rows(run_dir):
        assert time.monotonic() < deadline and proc.poll() is None, "no epoch within 60 s"
        time.sleep(0.1)
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 1 and json.loads(out)["status"] == "stopped", err
    assert "process 1 of 2 failed" not in err
    checkpoints = RunStore(run_dir).checkpoints()
    state = load_checkpoint(checkpoints[-1])
    assert state["partial"] is None or state["partial"]["pending"] == []  # as one process holds it
    assert read_events(run_dir / "events.jsonl")[-1]["status"] == "stopped"


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the machine without a GPU")
@pytest.mark.parametrize("args, message", [
    (["--nproc", "2", "--device", "cuda"], "no CUDA GPU"),
    (["--nproc", "0"], "--nproc"),
    (["--nproc", "2", "--batch-size", "3"], "batches need at least 4 samples"),
])
def test_bad_process_counts_exit_2_with_one_line(tmp_path: Path, capsys, args: list,
                                                 message: str) -> None:
    code, _, err = lpc_here(capsys, "run", *SYNTH, "--runs-dir", tmp_path, "--name", "x", *args)
    assert code == 2 and message in err
    assert len(err.strip().splitlines()) == 1 and not (tmp_path / "x").exists()


def test_processes_take_one_gpu_each(monkeypatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    assert _threads("cuda", 2) is None
    with pytest.raises(UsageError, match="only 2 GPUs"):
        _threads("cuda", 3)
    with pytest.raises(UsageError, match="give --device cuda, not cuda:1"):
        _threads("cuda:1", 2)
    assert _threads("cpu", 2) == max(1, len(os.sched_getaffinity(0)) // 2)


def test_an_existing_run_is_refused_by_rank_0_alone(tmp_path: Path, capsys) -> None:
    assert lpc_here(capsys, "run", *SYNTH, "--runs-dir", tmp_path, "--name", "x", "--epochs", 1)[0] == 0
    before = (tmp_path / "x" / "events.jsonl").read_bytes()
    done = lpc("run", *SYNTH, "--runs-dir", tmp_path, "--name", "x", "--nproc", 2)
    assert done.returncode == 2 and "already exists" in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1
    assert (tmp_path / "x" / "events.jsonl").read_bytes() == before


def test_a_crashed_process_ends_the_others_and_is_shown(tmp_path: Path, capsys) -> None:
    log = tmp_path / "rank1.log"
    rank0 = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    with open(log, "wb") as out:
        rank1 = subprocess.Popen([sys.executable, "-c", "import sys; print('boom', file=sys.stderr); "
                                  "sys.exit(3)"], stderr=out)
    began = time.monotonic()
    assert _wait([rank0, rank1], [tmp_path / "rank0.log", log], grace=0.5) == 1
    assert time.monotonic() - began < 30 and rank0.poll() is not None  # stopped, not waited for
    err = capsys.readouterr().err
    assert "process 1 of 2 failed (exit 3)" in err and "[rank 1] boom" in err


def test_torchrun_runs_the_same_command_under_one_name(tmp_path: Path) -> None:
    """`torchrun -m lpc_engine.launch` with `lpc run`'s options: the name
    drawn from rank 0's clock is everyone's, so one run folder appears."""
    torchrun = Path(sys.executable).with_name("torchrun")
    env = {**os.environ, "LPC_DIST_TIMEOUT_MINUTES": "2", "OMP_NUM_THREADS": "1"}
    done = subprocess.run([str(torchrun), "--standalone", "--nproc-per-node", "2", "-m",
                           "lpc_engine.launch", *SYNTH, "--epochs", "2", "--runs-dir", str(tmp_path),
                           "--json"], capture_output=True, text=True, timeout=120, env=env)
    assert done.returncode == 0, done.stderr[-2000:]
    (run_dir,) = tmp_path.iterdir()
    assert json.loads(done.stdout)["status"] == "finished"
    assert [e["processes"] for e in read_events(run_dir / "events.jsonl")
            if e["event"] == "started"] == [2]
