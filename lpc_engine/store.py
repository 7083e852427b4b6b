"""The run directory (DESIGN.md, contracts):

    RUN/config.json      the resolved config (config.toml beside it, to rerun)
    RUN/events.jsonl     one JSON object a line, each with an "event" key
    RUN/checkpoints/     epoch-E-step-S.pt (after epoch E and S steps of the
                         next), the last two kept, written atomically
    RUN/summary.json     when the run ends

Every file but events.jsonl is written whole to a temporary file, fsynced and
renamed over the old one, so a crash leaves either the old or the new file.
events.jsonl is appended one whole line per write; on resume, rows after the
checkpoint's epoch and a torn last line are dropped.
"""

from __future__ import annotations

import io
import json
import math
import os
import re
from pathlib import Path
from typing import Any

import torch

from .errors import UsageError

KEEP_CHECKPOINTS = 2
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._=+-]{0,127}$")


def run_path(runs_dir: str | Path, name: str) -> Path:
    """RUNS_DIR/NAME, refusing names that could escape the runs directory."""
    if not _NAME.match(name) or ".." in name:
        raise UsageError(f"name: {name!r} is not a valid run name "
                         "(letters, digits and . _ = + -, not starting with . or -)")
    return Path(runs_dir) / name


def atomic_write(path: Path, data: bytes) -> None:
    """Write `data` to `path` so that a crash never leaves a partial file."""
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    try:
        with open(tmp, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)  # a full disk must not leave debris behind
        raise
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def json_safe(value: Any) -> Any:
    """Non-finite floats become null: strict JSON has no NaN or Infinity."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    return value


class RunStore:
    """Reads and writes one run directory."""

    def __init__(self, run_dir: str | Path):
        self.dir = Path(run_dir)
        self.events_path = self.dir / "events.jsonl"
        self.checkpoint_dir = self.dir / "checkpoints"
        self._events = None

    def exists(self) -> bool:
        return (self.dir / "config.json").is_file()

    def create(self, config: dict[str, Any], config_toml: str, overwrite: bool = False) -> None:
        """A fresh run directory holding `config`; refuses to clobber a run."""
        if self.dir.exists() and any(self.dir.iterdir()):
            if not overwrite:
                raise UsageError(f"run {self.dir} already exists (pass --resume to continue "
                                 "it or --overwrite to replace it)")
            for old in (self.events_path, self.dir / "summary.json"):
                old.unlink(missing_ok=True)
            for ckpt in self.checkpoints():
                ckpt.unlink()
        try:
            self.checkpoint_dir.mkdir(parents=True, exist_ok=True)
            atomic_write(self.dir / "config.json", json.dumps(json_safe(config), indent=2).encode())
            atomic_write(self.dir / "config.toml", config_toml.encode())
            self.events_path.touch()
        except OSError as exc:
            raise UsageError(f"runs dir: cannot write {self.dir}: {exc.strerror}") from None

    def update_config(self, config: dict[str, Any]) -> None:
        """Rewrite config.json (a resumed run given more epochs)."""
        atomic_write(self.dir / "config.json", json.dumps(json_safe(config), indent=2).encode())

    def read_config(self) -> dict[str, Any]:
        return json.loads((self.dir / "config.json").read_text())

    # events ---------------------------------------------------------------
    def append(self, row: dict[str, Any]) -> None:
        """Append one event row as one whole line."""
        if self._events is None:
            self._events = open(self.events_path, "a", encoding="utf-8")
        self._events.write(json.dumps(json_safe(row)) + "\n")
        self._events.flush()

    def sync(self) -> None:
        if self._events is not None:
            os.fsync(self._events.fileno())

    def close(self) -> None:
        if self._events is not None:
            self._events.close()
            self._events = None

    def read_events(self) -> list[dict[str, Any]]:
        return read_events(self.events_path)

    def truncate_events(self, last_epoch: int) -> None:
        """Keep only rows up to `last_epoch` (resume: they will be redone)."""
        self.close()
        rows = [r for r in self.read_events() if r.get("epoch", 0) <= last_epoch
                and r.get("event") not in ("finished", "failed")]
        text = "".join(json.dumps(r) + "\n" for r in rows)
        atomic_write(self.events_path, text.encode())

    # checkpoints ----------------------------------------------------------
    def checkpoints(self) -> list[Path]:
        """Checkpoint files, oldest first."""
        if not self.checkpoint_dir.is_dir():
            return []
        return sorted(self.checkpoint_dir.glob("epoch-*.pt"))

    def save_checkpoint(self, state: dict[str, Any], epoch: int, step: int = 0) -> Path:
        """Write `state` atomically; keep the last KEEP_CHECKPOINTS files."""
        buffer = io.BytesIO()
        torch.save(state, buffer)
        # Names sort in training order: epoch, then steps into the next epoch.
        path = self.checkpoint_dir / f"epoch-{epoch:06d}-step-{step:07d}.pt"
        atomic_write(path, buffer.getvalue())
        self.sync()
        for old in self.checkpoints()[:-KEEP_CHECKPOINTS]:
            old.unlink(missing_ok=True)
        return path

    def latest_checkpoint(self) -> Path | None:
        found = self.checkpoints()
        return found[-1] if found else None

    def write_summary(self, summary: dict[str, Any]) -> None:
        atomic_write(self.dir / "summary.json", json.dumps(json_safe(summary), indent=2).encode())

    def read_summary(self) -> dict[str, Any] | None:
        path = self.dir / "summary.json"
        return json.loads(path.read_text()) if path.is_file() else None


def load_checkpoint(path: str | Path, device: str | torch.device = "cpu") -> dict[str, Any]:
    """A checkpoint's state; weights_only=True so a pickled payload never runs."""
    return torch.load(path, map_location=device, weights_only=True)


def read_events(path: str | Path) -> list[dict[str, Any]]:
    """Rows of an events.jsonl; a torn last line (a crash mid-write) is skipped."""
    rows = []
    path = Path(path)
    if not path.is_file():
        return rows
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(row, dict):
            rows.append(row)
    return rows


def list_runs(runs_dir: str | Path) -> list[dict[str, Any]]:
    """One row per run directory under `runs_dir`, newest first."""
    runs = []
    root = Path(runs_dir)
    if not root.is_dir():
        return runs
    for run_dir in root.iterdir():
        store = RunStore(run_dir)
        if not store.exists():
            continue
        config = store.read_config()
        epochs = [r for r in store.read_events() if r.get("event") == "epoch"]
        summary = store.read_summary() or {}
        last = epochs[-1] if epochs else {}
        runs.append({
            "name": run_dir.name,
            "preset": config["model"]["preset"],
            "dataset": config["data"]["dataset"],
            "epochs_done": last.get("epoch", 0),
            "epochs": config["epochs"],
            "status": summary.get("status", "incomplete"),
            "test_acc": summary.get("test_acc", last.get("test_acc")),
            "mtime": run_dir.stat().st_mtime,
        })
    return sorted(runs, key=lambda r: r["mtime"], reverse=True)
