"""Checkpoint files of a run directory: each with its SHA-256 beside it,
verified and loaded with weights_only=True (nothing pickled ever runs), the
newest good one found, and damaged ones set aside. What a checkpoint holds
is training/checkpoint.py's business; these functions only see files.
"""

from __future__ import annotations

import hashlib
import io
import pickle
import re
from pathlib import Path
from typing import Any

import torch

from lpc_engine.errors import CheckpointError, CorruptCheckpoint


def checksum_path(checkpoint: Path) -> Path:
    return checkpoint.with_name(checkpoint.name + ".sha256")


def load_checkpoint(path: str | Path, device: str | torch.device = "cpu") -> dict[str, Any]:
    """A checkpoint's state, checked against its SHA-256 (when it has one)
    and unpickled with weights_only=True, so that a pickled payload never runs.

    CorruptCheckpoint: unreadable, or not matching its checksum.
    CheckpointError: it holds pickled Python objects (refused, nothing run).
    """
    path = Path(path)
    try:
        data = path.read_bytes()  # verified and loaded from the same bytes
        recorded = checksum_path(path).read_text().split()[:1] if checksum_path(path).exists() else []
    except OSError as exc:
        raise CorruptCheckpoint(f"checkpoint: cannot read {path}: {exc.strerror or exc}") from None
    if recorded and hashlib.sha256(data).hexdigest() != recorded[0]:
        raise CorruptCheckpoint(f"checkpoint: {path} does not match its SHA-256 (truncated or damaged)")
    try:
        return torch.load(io.BytesIO(data), map_location=device, weights_only=True)
    except pickle.UnpicklingError as exc:
        found = re.search(r"GLOBAL ([\w.]+)", str(exc))  # torch names the refused callable
        if found:
            raise CheckpointError(
                f"checkpoint: {path} is not a plain-weights checkpoint: it holds a pickled "
                f"Python object ({found.group(1)}); refused without running it, as loading it could "
                "run code") from None
        raise CorruptCheckpoint(f"checkpoint: {path} cannot be read (not a torch checkpoint)") from None
    except Exception as exc:  # torch reports a damaged zip in many ways
        what = str(exc).splitlines()[0][:120] if str(exc) else type(exc).__name__
        raise CorruptCheckpoint(f"checkpoint: {path} cannot be read ({what})") from None


def load_newest(paths: list[Path], device: str | torch.device = "cpu"
                ) -> tuple[Path | None, dict[str, Any] | None, list[tuple[Path, str]]]:
    """The newest of `paths` (oldest first) that verifies: (path, state,
    skipped), `skipped` naming the newer ones found corrupt and why. One
    holding pickled objects is not skipped: its CheckpointError stops the load."""
    skipped: list[tuple[Path, str]] = []
    for path in reversed(paths):
        try:
            return path, load_checkpoint(path, device), skipped
        except CorruptCheckpoint as exc:
            skipped.append((path, str(exc)))
    return None, None, skipped


def set_aside(paths: list[Path]) -> None:
    """Rename corrupt checkpoints (and checksums) to *.corrupt: kept for a
    look, never loaded again."""
    for path in paths:
        for p in (path, checksum_path(path)):
            if p.exists():
                p.replace(p.with_name(p.name + ".corrupt"))
