"""A run started from the TUI as a detached `lpc run` process: in a session
of its own, its output in a log file, so it keeps training when the TUI
closes or the SSH connection drops. The TUI then follows it from its folder
like any other run (follow.py)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from lpc_engine.config import RunConfig
from lpc_engine.config_io import dumps_toml

FOLDER = ".detached"  # beside the runs: the config handed over and the process's log


def start_detached(cfg: RunConfig, run_dir: Path) -> subprocess.Popen:
    """`lpc run --config CFG --runs-dir PARENT --name NAME` in a new session
    (no terminal, no signals from this one); its stdout and stderr go to
    RUNS/.detached/NAME.log."""
    folder = run_dir.parent / FOLDER
    folder.mkdir(parents=True, exist_ok=True)
    config = folder / f"{run_dir.name}.toml"
    config.write_text(dumps_toml(cfg), encoding="utf-8")
    log = open(folder / f"{run_dir.name}.log", "ab")
    try:
        return subprocess.Popen(
            [sys.executable, "-m", "lpc_engine.cli", "run", "--config", str(config),
             "--runs-dir", str(run_dir.parent), "--name", run_dir.name],
            stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    finally:
        log.close()
