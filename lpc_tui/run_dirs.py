"""Where a run started from the app goes, named as `lpc run` names it."""

from __future__ import annotations

from pathlib import Path

from lpc_engine.config import RunConfig
from lpc_engine.errors import UsageError
from lpc_engine.runs.store import RunStore, default_run_name, run_path


def new_run_dir(runs_dir: str | Path, name: str, cfg: RunConfig) -> Path:
    """RUNS_DIR/NAME for a new run; a UsageError if the name is invalid or taken."""
    run_dir = run_path(runs_dir, name or default_run_name(cfg.model.preset, cfg.data.dataset, cfg.seed))
    if RunStore(run_dir).exists():
        raise UsageError(f"run {run_dir.name} already exists: give another run name, "
                         "or resume it from the runs pane (r, then R)")
    return run_dir
