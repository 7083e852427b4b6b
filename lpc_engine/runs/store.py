"""The run directory (DESIGN.md, contracts):

    RUN/config.json      the resolved config (config.toml beside it, to rerun)
    RUN/events.jsonl     one JSON object a line, each with an "event" key
    RUN/checkpoints/     epoch-E-step-S.pt (after epoch E and S steps of the
                         next), the last two kept, written atomically, each
                         with its SHA-256 in epoch-E-step-S.pt.sha256
    RUN/summary.json     when the run ends

A run directory appears whole (built under a hidden name, then renamed).
Every other file is written to a temporary file, fsynced and renamed over the
old one (durable.py): a crash leaves the old or the new file. events.jsonl takes one whole
line per write(2), a failed write cut back off; on resume, rows after the
checkpoint's epoch and a torn last line are dropped. A write that fails in
mid-run (disk full, folder made read-only) raises StorageError.
"""

from __future__ import annotations

import hashlib
import io
import json
import math
import os
import re
import shutil
import time
from contextlib import suppress
from pathlib import Path
from typing import Any

import torch

from lpc_engine.runs.checkpoint_files import checksum_path, load_checkpoint  # noqa: F401  (load_checkpoint: re-exported)
from lpc_engine.runs.durable import atomic_write, fsync_dir, writing
from lpc_engine.errors import UsageError
from lpc_engine.events import RunFailed, RunFinished
from lpc_engine.runs.lock import NAME as LOCK_NAME, RunLock
from lpc_engine.runs.reader import RunReader, list_runs, read_events, read_rows  # noqa: F401  (re-exported)

KEEP_CHECKPOINTS = 2
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._=+-]{0,127}$")


def run_path(runs_dir: str | Path, name: str) -> Path:
    """RUNS_DIR/NAME, refusing names that could escape the runs directory."""
    if not _NAME.match(name) or ".." in name:
        raise UsageError(f"name: {name!r} is not a valid run name "
                         "(letters, digits and . _ = + -, not starting with . or -)")
    return Path(runs_dir) / name


def default_run_name(preset: str, dataset: str, seed: int) -> str:
    """A new run's name when none is given: preset-dataset-sSEED-YYYYmmdd-HHMMSS."""
    return f"{preset}-{dataset}-s{seed}-{time.strftime('%Y%m%d-%H%M%S')}"


def json_safe(value: Any) -> Any:
    """Non-finite floats become null: strict JSON has no NaN or Infinity."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    return value


def _empty(folder: Path) -> bool:
    """True if `folder` is missing or empty; an unreadable one is a UsageError."""
    try:
        return not folder.is_dir() or not any(folder.iterdir())
    except OSError as exc:
        raise UsageError(f"runs dir: cannot read {folder}: {exc.strerror or exc}") from None


def _json(value: Any) -> bytes:
    return json.dumps(json_safe(value), indent=2).encode()


class RunStore:
    """Reads and writes one run directory."""

    def __init__(self, run_dir: str | Path):
        self.dir = Path(run_dir)
        self.events_path = self.dir / "events.jsonl"
        self.checkpoint_dir = self.dir / "checkpoints"
        self._fd: int | None = None  # events.jsonl, opened for appending
        self.lock = RunLock(self.dir)  # one writer per run (lock.py)
        self.notice = ""  # set when the lock of a writer that is gone was taken over

    def exists(self) -> bool:
        return (self.dir / "config.json").is_file()

    def create(self, config: dict[str, Any], config_toml: str, overwrite: bool = False) -> None:
        """A fresh run directory holding `config`; refuses to clobber a run.
        A folder that cannot be written is a UsageError, and leaves nothing."""
        for folder, what in ((self.dir.parent, "runs dir"), (self.dir, "name")):
            if folder.exists() and not folder.is_dir():
                raise UsageError(f"{what}: {folder} exists and is not a folder")
        if not _empty(self.dir):
            if not overwrite:
                raise UsageError(f"run {self.dir} already exists (pass --resume to continue "
                                 "it or --overwrite to replace it)")
            self.take_lock()  # a run that is being written is never replaced
            self._clear()
        files = {"config.toml": config_toml.encode(), "events.jsonl": b"",
                 "config.json": _json(config)}
        made = next((p for p in reversed(self.dir.parents) if not p.exists()), None)
        try:
            if self.dir.is_dir():  # --overwrite: the folder stays, its files are replaced
                self.checkpoint_dir.mkdir(exist_ok=True)
                for name, data in files.items():
                    atomic_write(self.dir / name, data)
            else:
                self._create_whole(files)
                self.take_lock()
        except OSError as exc:
            if made is not None:  # the runs dir did not exist: leave no trace of it
                shutil.rmtree(made, ignore_errors=True)
            raise UsageError(f"runs dir: cannot write {self.dir}: {exc.strerror or exc}") from None

    def _create_whole(self, files: dict[str, bytes]) -> None:
        """Build the run under a hidden name, then rename it into place: a
        crash never leaves a half-made run that blocks the name."""
        self.dir.parent.mkdir(parents=True, exist_ok=True)
        for old in self.dir.parent.glob(f".{self.dir.name}.new*"):
            shutil.rmtree(old, ignore_errors=True)  # debris of a create killed in mid-way
        tmp = self.dir.with_name(f".{self.dir.name}.new{os.getpid()}")
        try:
            (tmp / "checkpoints").mkdir(parents=True)
            for name, data in files.items():
                atomic_write(tmp / name, data)
            os.replace(tmp, self.dir)  # an empty folder there is replaced too
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        fsync_dir(self.dir.parent)

    def _clear(self) -> None:
        """Everything the replaced run left (its events, summary, checkpoints,
        latents, tracker logs, exports), but the lock this writer now holds:
        nothing of the old run may pass for the new one's."""
        for old in self.dir.iterdir():
            if old.name == LOCK_NAME:
                continue
            if old.is_dir() and not old.is_symlink():
                shutil.rmtree(old)
            else:
                old.unlink()

    def update_config(self, config: dict[str, Any]) -> None:
        """Rewrite config.json (a resumed run given more epochs)."""
        path = self.dir / "config.json"
        with writing(path):
            atomic_write(path, _json(config))

    def read_config(self) -> dict[str, Any]:
        """config.json; a damaged one is a UsageError naming it."""
        return RunReader(self.dir).config()

    # events ---------------------------------------------------------------
    def append(self, row: dict[str, Any]) -> None:
        """Append one event row as one whole line: a single write(2) on an
        O_APPEND file, cut back off if it fails (a full disk) so that no
        partial line is left behind."""
        data = (json.dumps(json_safe(row)) + "\n").encode()
        with writing(self.events_path):
            if self._fd is None:
                self._fd = os.open(self.events_path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
            end = os.lseek(self._fd, 0, os.SEEK_END)
            try:
                if os.write(self._fd, data) != len(data):
                    raise OSError(28, "short write (no space left on device?)")
            except OSError:
                with suppress(OSError):
                    os.ftruncate(self._fd, end)
                raise

    def sync(self) -> None:
        if self._fd is not None:
            with writing(self.events_path):
                os.fsync(self._fd)

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def take_lock(self) -> None:
        """Become the run's one writer (a UsageError naming the holder if
        another process writes it); `notice` says if a dead writer's lock
        was taken over."""
        if not self.lock.held:
            self.notice = self.lock.acquire()

    def release(self) -> None:
        """Close events.jsonl and let go of the lock (its file removed: only
        a writer that died without getting here leaves one, marking the run
        stale)."""
        self.close()
        self.lock.release()

    def read_events(self) -> list[dict[str, Any]]:
        return read_rows(self.events_path)

    def truncate_events(self, last_epoch: int) -> None:
        """Keep only rows up to `last_epoch` (resume: they will be redone)."""
        self.close()
        ends = (RunFinished.kind, RunFailed.kind)
        rows = [r for r in self.read_events() if r.get("epoch", 0) <= last_epoch
                and r.get("event") not in ends]
        text = "".join(json.dumps(r) + "\n" for r in rows)
        with writing(self.events_path):
            atomic_write(self.events_path, text.encode())

    def clean_debris(self) -> None:
        """Remove what a killed process left: temporary files of unfinished
        atomic writes, and checksums whose checkpoint never landed."""
        for folder in (self.dir, self.checkpoint_dir):
            for tmp in folder.glob(".*.tmp*"):
                tmp.unlink(missing_ok=True)
        for checksum in self.checkpoint_dir.glob("epoch-*.pt.sha256"):
            if not checksum.with_suffix("").exists():
                checksum.unlink(missing_ok=True)

    # checkpoints ----------------------------------------------------------
    def checkpoints(self) -> list[Path]:
        """Checkpoint files, oldest first."""
        if not self.checkpoint_dir.is_dir():
            return []
        return sorted(self.checkpoint_dir.glob("epoch-*.pt"))

    def save_checkpoint(self, state: dict[str, Any], epoch: int, step: int = 0) -> Path:
        """Write `state` and its checksum atomically; keep the last KEEP_CHECKPOINTS."""
        buffer = io.BytesIO()
        torch.save(state, buffer)
        data = buffer.getvalue()
        # Names sort in training order: epoch, then steps into the next epoch.
        path = self.checkpoint_dir / f"epoch-{epoch:06d}-step-{step:07d}.pt"
        with writing(path):
            # The checksum first: every checkpoint on disk then has one. A crash
            # in between leaves a checksum alone (removed on resume) or, over a
            # file of the same name, a mismatch (the previous one is used).
            digest = hashlib.sha256(data).hexdigest()
            atomic_write(checksum_path(path), f"{digest}  {path.name}\n".encode())  # sha256sum -c
            try:
                atomic_write(path, data)
            except OSError:
                checksum_path(path).unlink(missing_ok=True)
                raise
            self.sync()
            for old in self.checkpoints()[:-KEEP_CHECKPOINTS]:
                old.unlink(missing_ok=True)
                checksum_path(old).unlink(missing_ok=True)
        return path

    def latest_checkpoint(self) -> Path | None:
        found = self.checkpoints()
        return found[-1] if found else None

    def write_summary(self, summary: dict[str, Any]) -> None:
        path = self.dir / "summary.json"
        with writing(path):
            atomic_write(path, _json(summary))

    def read_summary(self) -> dict[str, Any] | None:
        return RunReader(self.dir).summary()
