"""`e` in the app: a run's epoch rows as CSV, beside its other files."""

from __future__ import annotations

import csv
import io
import math
from pathlib import Path

from lpc_engine.runs.store import atomic_write

from lpc_tui.history import EPOCH_KEYS, RunHistory


def epochs_csv(h: RunHistory) -> str:
    """One row per epoch with the events.jsonl epoch fields; NaN left empty."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(EPOCH_KEYS)
    for row in h.rows:
        writer.writerow(["" if isinstance(v, float) and not math.isfinite(v) else v
                         for v in (row.get(k, math.nan) for k in EPOCH_KEYS)])
    return out.getvalue()


def export_folder(h: RunHistory, runs_dir: Path) -> Path:
    """The run's own directory, or the runs directory for an unstored run."""
    return Path(h.run_dir) if h.run_dir else runs_dir


def write_epochs_csv(h: RunHistory, folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "epochs.csv"
    atomic_write(path, epochs_csv(h).encode())
    return path
