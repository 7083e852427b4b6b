"""The one reader of a run directory: events.jsonl as typed events, the
latent samples (runs/latents.py), and the run's config and summary; `lpc runs`, `lpc report`, a sweep's progress, a
resume and the TUI all read a run through it. Readers never write.

A torn last line (a crash, or a writer caught in mid-write) is skipped by
`rows` and waited out by `follow`, which hands over only what was appended
since its last call, by byte offset: polling works on network filesystems,
which deliver no change notifications.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from lpc_engine.errors import UsageError
from lpc_engine.events import EpochEnd, Event, LatentSample, MetricsComputed, from_json
from lpc_engine.runs.control import pending
from lpc_engine.runs.latents import latent_files, read_latent_sample
from lpc_engine.runs.lock import holder, writer_alive


def _parse(lines: list[bytes]) -> list[dict[str, Any]]:
    rows = []
    for line in lines:
        try:
            row = json.loads(line)
        except (json.JSONDecodeError, UnicodeDecodeError):
            continue
        if isinstance(row, dict):
            rows.append(row)
    return rows


def read_rows(path: str | Path) -> list[dict[str, Any]]:
    """Rows of an events.jsonl as plain dicts; a torn last line is skipped."""
    try:
        data = Path(path).read_bytes()
    except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
        return []
    return _parse(data.splitlines())


read_events = read_rows  # the name the store and the tests have always used


def typed(rows: list[dict[str, Any]]) -> list[Event]:
    """The rows as events; rows of kinds this version does not know are left out."""
    return [e for e in map(from_json, rows) if e is not None]


class RunReader:
    """Reads one run directory; `follow` keeps its place between calls."""

    def __init__(self, run_dir: str | Path):
        self.dir = Path(run_dir)
        self.events_path = self.dir / "events.jsonl"
        self._offset = 0

    def exists(self) -> bool:
        return (self.dir / "config.json").is_file()

    def rows(self) -> list[dict[str, Any]]:
        return read_rows(self.events_path)

    def events(self) -> list[Event]:
        return typed(self.rows())

    def epoch_rows(self) -> list[EpochEnd]:
        return [e for e in self.events() if isinstance(e, EpochEnd)]

    def metrics_rows(self) -> list[MetricsComputed]:
        return [e for e in self.events() if isinstance(e, MetricsComputed)]

    def latent_epochs(self) -> list[int]:
        """The measured epochs whose latent sample is on disk (runs/latents.py)."""
        return list(latent_files(self.dir))

    def latent_sample(self, epoch: int | None = None) -> LatentSample | None:
        """The latent sample of `epoch` (the last one if None); None if absent."""
        files = latent_files(self.dir)
        path = files.get(epoch) if epoch is not None else next(reversed(files.values()), None)
        return read_latent_sample(path) if path is not None else None

    def follow(self) -> list[Event]:
        """The events appended since the last call (all of them the first
        time). A last line without its newline is left for the next call;
        a file that shrank (a resume cut it back) is read again from the start."""
        try:
            with open(self.events_path, "rb") as f:
                if f.seek(0, 2) < self._offset:
                    self._offset = 0
                f.seek(self._offset)
                data = f.read()
        except FileNotFoundError:
            return []
        whole = data[:data.rfind(b"\n") + 1]
        self._offset += len(whole)
        return typed(_parse(whole.splitlines()))

    def config(self) -> dict[str, Any]:
        """config.json; a damaged one is a UsageError naming it."""
        path = self.dir / "config.json"
        try:
            config = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise UsageError(f"run: cannot read {path}: {exc}") from None
        if not isinstance(config, dict):
            raise UsageError(f"run: {path} does not hold a config")
        return config

    def summary(self) -> dict[str, Any] | None:
        path = self.dir / "summary.json"
        return json.loads(path.read_text()) if path.is_file() else None


def _finite_or_none(value: Any) -> Any:
    return None if isinstance(value, float) and not math.isfinite(value) else value


STATES = ("running", "paused", "stopped", "finished", "diverged", "failed", "stale")
_ENDED = {"finished": "finished", "stopped": "stopped", "diverged": "diverged"}


def run_state(run_dir: str | Path, summary: dict[str, Any] | None) -> str:
    """running (a writer holds the lock, lock.py), paused (and a pause request
    waits in its folder, control.py), stale (a lock file whose writer is gone,
    or no last row at all), or how the run ended: stopped, finished,
    diverged, failed."""
    h = holder(run_dir)
    if h is not None and writer_alive(h):
        return "paused" if pending(run_dir) == "pause" else "running"
    if h is not None:
        return "stale"
    status = (summary or {}).get("status")
    return "stale" if status is None else _ENDED.get(status, "failed")


_SKIP = {"checkpoints", "latents", "tensorboard"}  # folders inside a run


def find_runs(root: str | Path) -> list[Path]:
    """Every run directory under `root`, at any depth (a sweep's runs one level
    down); hidden folders (.NAME.new*: a run being made, .configs, .logs) and
    a run's own folders are not entered."""
    found: list[Path] = []
    stack = [Path(root)]
    while stack:
        folder = stack.pop()
        try:
            children = [c for c in folder.iterdir() if c.is_dir() and not c.name.startswith(".")]
        except OSError:
            continue
        for child in children:
            if (child / "config.json").is_file():
                found.append(child)
            elif child.name not in _SKIP:
                stack.append(child)
    return found


def _last_epoch_row(path: Path, tail: int = 1 << 16) -> EpochEnd | None:
    """The last epoch row of an events.jsonl, from its last 64 kB (rows are
    short): listing hundreds of growing runs reads little."""
    try:
        with open(path, "rb") as f:
            size = f.seek(0, 2)
            f.seek(max(0, size - tail))
            lines = f.read().splitlines()[1 if size > tail else 0:]
    except OSError:
        return None
    rows = [e for e in typed(_parse(lines)) if isinstance(e, EpochEnd)]
    return rows[-1] if rows else None


def list_runs(runs_dir: str | Path) -> list[dict[str, Any]]:
    """One row per run directory under `runs_dir` (at any depth), newest first;
    `name` is the path below `runs_dir` (sweep-digits/lpc-s0), `group` its
    folder ("" at the top). A run whose config cannot be read is listed as
    "unreadable", not hidden."""
    root = Path(runs_dir)
    runs = [_row(root, run_dir) for run_dir in find_runs(root)] if root.is_dir() else []
    return sorted(runs, key=lambda r: r["mtime"], reverse=True)


def _row(root: Path, run_dir: Path) -> dict[str, Any]:
    run = RunReader(run_dir)
    last = _last_epoch_row(run.events_path)
    try:
        config = run.config()
        preset, dataset = config["model"]["preset"], config["data"]["dataset"]
        total, summary = config["epochs"], run.summary() or {}
        state = run_state(run_dir, summary or None)
    except (UsageError, ValueError, KeyError, TypeError):
        preset = dataset = "?"
        total, summary, state = 0, {"status": "unreadable"}, "failed"
    relative = run_dir.relative_to(root)
    return {
        "name": relative.as_posix(), "group": relative.parent.as_posix() if relative.parent.parts else "",
        "preset": preset, "dataset": dataset,
        "epochs_done": last.epoch if last else 0, "epochs": total,
        "status": summary.get("status", "incomplete"), "state": state,
        "test_acc": summary.get("test_acc", _finite_or_none(last.test_acc) if last else None),
        "separation_ratio": (summary.get("metrics") or {}).get("separation_ratio"),
        "robustness_mean": (summary.get("robustness") or {}).get("robustness_mean"),
        "mtime": run_dir.stat().st_mtime,
    }
