"""Crash safety, from outside: `lpc run` on digits killed with SIGKILL at 20
seeded moments, each resumed with --resume to the end, must give the numbers
of an uninterrupted run and a clean events.jsonl (every line whole, epochs
1..N once each, one `finished`). SIGTERM and Ctrl-C stop with a checkpoint.

The runs are children forked from a warmed-up process (tests/cli/_zygote.py):
real processes killed by real signals, without 5 s of imports each. The
uninterrupted reference goes through `python -m lpc_engine.cli` itself.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from lpc_engine.runs.store import checksum_path

ROOT = Path(__file__).resolve().parents[2]
EPOCHS = 6
TIMING = {"seconds", "samples_per_s", "session_seconds"}
KILL_SEED, KILLS = 20240521, 20


def command(runs: Path, name: str, config: Path) -> list[str]:
    """Short on purpose: a checkpoint every epoch, metrics at 3 and 6, a
    small DeepFool table at the end, no latent samples."""
    return ["run", "--dataset", "digits", "--device", "cpu", "--seed", "0", "--epochs", str(EPOCHS),
            "--checkpoint-every", "1", "--metrics-every", "3", "--robustness-samples", "40",
            "--config", str(config), "--runs-dir", str(runs), "--name", name, "--json"]


def resume_command(runs: Path, name: str) -> list[str]:
    return ["run", "--resume", "--runs-dir", str(runs), "--name", name, "--json"]


class Zygote:
    def __init__(self) -> None:
        env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
        self.proc = subprocess.Popen([sys.executable, str(Path(__file__).with_name("_zygote.py"))],
                                     stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
                                     cwd=ROOT, env=env)
        assert json.loads(self.proc.stdout.readline())["ready"]

    def run(self, argv: list[str], log: Path, **kill) -> dict:
        self.proc.stdin.write(json.dumps({"argv": argv, "log": str(log), **kill}) + "\n")
        self.proc.stdin.flush()
        return json.loads(self.proc.stdout.readline())

    def close(self) -> None:
        self.proc.stdin.close()
        self.proc.wait(timeout=30)


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    """The zygote, the short config, and the uninterrupted run's summary and rows."""
    base = tmp_path_factory.mktemp("faults")
    config = base / "short.toml"
    config.write_text("latent_sample_size = 0\n")
    runs = base / "runs"
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run([sys.executable, "-m", "lpc_engine.cli", *command(runs, "straight", config)],
                          capture_output=True, text=True, cwd=ROOT, env=env, timeout=300)
    assert done.returncode == 0, done.stderr
    zygote = Zygote()
    yield zygote, config, runs, _final(runs / "straight")
    zygote.close()


def _final(run_dir: Path) -> tuple[dict, list[dict]]:
    summary = json.loads((run_dir / "summary.json").read_text())
    rows = [json.loads(line) for line in (run_dir / "events.jsonl").read_text().splitlines()]
    drop = lambda r: {k: v for k, v in r.items() if k not in TIMING}  # noqa: E731
    return drop(summary), [drop(r) for r in rows if r["event"] == "epoch"]


def assert_clean(run_dir: Path, reference: tuple[dict, list[dict]]) -> None:
    text = (run_dir / "events.jsonl").read_text()
    assert text.endswith("\n")
    rows = [json.loads(line) for line in text.splitlines()]  # every line whole
    assert [r["epoch"] for r in rows if r["event"] == "epoch"] == list(range(1, EPOCHS + 1))
    assert [r["event"] for r in rows].count("finished") == 1 and rows[-1]["event"] == "finished"
    summary, epochs = _final(run_dir)
    assert summary == reference[0]  # test_acc, loss, metrics, robustness: all equal
    assert epochs == reference[1]
    assert not [p for p in run_dir.rglob(".*tmp*")], "debris of an atomic write"
    for ckpt in (run_dir / "checkpoints").glob("*.pt"):
        digest = checksum_path(ckpt).read_text().split()[0]
        assert hashlib.sha256(ckpt.read_bytes()).hexdigest() == digest


@pytest.mark.slow
def test_sigkill_at_20_moments_then_resume_matches_an_uninterrupted_run(setup, tmp_path) -> None:
    zygote, config, runs, reference = setup
    timed = zygote.run(command(tmp_path / "runs", "timed", config), tmp_path / "timed.log")
    assert timed["code"] == 0
    assert _final(tmp_path / "runs" / "timed") == reference  # a forked child = the real command
    rng = random.Random(KILL_SEED)
    moments = [rng.uniform(0.0, 1.05) * timed["seconds"] for _ in range(KILLS)]
    outcomes = []
    for i, after in enumerate(moments):
        name, log = f"k{i}", tmp_path / f"k{i}.log"
        killed = zygote.run(command(runs, name, config), log, signal=signal.SIGKILL, after=after)
        resumed = zygote.run(resume_command(runs, name), log.with_suffix(".resume"))
        if resumed["code"] == 2:  # killed before the run directory existed: run it again
            assert "no run at" in log.with_suffix(".resume").read_text()
            resumed = zygote.run(command(runs, name, config), log.with_suffix(".again"))
        assert resumed["code"] == 0, log.with_suffix(".resume").read_text()
        assert_clean(runs / name, reference)
        outcomes.append((killed["code"], _restarted_at(runs / name)))
    print("exit code of the killed run, epoch its resume started at:", outcomes)
    assert [code for code, _ in outcomes].count(-signal.SIGKILL) >= KILLS // 2  # most really killed
    assert len({start for _, start in outcomes if start and 1 < start <= EPOCHS}) >= 3  # at many places


def _restarted_at(run_dir: Path) -> int | None:
    """The first epoch of the resumed session (None: the run started afresh)."""
    started = [json.loads(line) for line in (run_dir / "events.jsonl").read_text().splitlines()
               if '"event": "started"' in line]
    return started[-1]["start_epoch"] if len(started) > 1 else None


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_sigterm_and_ctrl_c_save_a_checkpoint_before_exiting(sig, setup, tmp_path) -> None:
    zygote, config, _, reference = setup
    runs, name = tmp_path / "runs", "s"
    events = runs / name / "events.jsonl"
    stopped = zygote.run(command(runs, name, config), tmp_path / "log", signal=sig,
                         wait_for=[str(events), '"epoch": 2, "loss"'])
    assert stopped["code"] == 1, (tmp_path / "log").read_text()
    assert "stopping after this step" in (tmp_path / "log").read_text()
    summary = json.loads((runs / name / "summary.json").read_text())
    assert summary["status"] == "stopped" and 2 <= summary["epochs_done"] < EPOCHS
    rows = [json.loads(line) for line in events.read_text().splitlines()]
    assert rows[-2]["event"] == "checkpoint" and rows[-1]["status"] == "stopped"
    assert zygote.run(resume_command(runs, name), tmp_path / "log2")["code"] == 0
    assert_clean(runs / name, reference)
