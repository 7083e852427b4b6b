"""Experiment trackers: TensorBoard, W&B (offline) and MLflow, live
(`lpc run --log-to`, through sink.py's TrackerSink) and after the fact
(`lpc export`, export.py). mapping.py says what each event becomes; one
backend a tracker, each behind its own pip extra and imported only when
opened.

By default a tracker's files go inside the run's folder (RUN_DIR/tensorboard/,
RUN_DIR/wandb/, RUN_DIR/mlflow/), so `tensorboard --logdir RUNS_DIR` finds
every run; MLFLOW_TRACKING_URI, when set, sends MLflow runs there instead.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from lpc_engine.config import TRACKERS, tracker_names
from lpc_engine.errors import UsageError
from lpc_engine.trackers.base import Tracker, installed, missing

# TRACKERS (the names) and tracker_names (the reading of `log_to`) live in
# config.py, where the field is validated; re-exported here.


def check_tracker(name: str) -> str:
    if name not in TRACKERS:
        raise UsageError(f"unknown tracker {name!r}: choose from {', '.join(TRACKERS)}")
    return name


def parse_log_to(text: str) -> tuple[str, ...]:
    """"tensorboard,wandb" -> ("tensorboard", "wandb"): comma-separated, spaces
    and case ignored, "" = no tracker, repeats kept once, in order (the
    config's own reading of `log_to`); an unknown name is a UsageError
    listing the choices."""
    return tuple(check_tracker(n) for n in tracker_names(text or ""))


def require_installed(names: tuple[str, ...]) -> None:
    """A UsageError naming the pip extra of the first tracker whose library is
    missing: for `lpc run --log-to` to refuse before it trains."""
    for name in names:
        if not installed(check_tracker(name)):
            raise missing(name)


def default_out(name: str, run_dir: str | Path) -> Path:
    """Where tracker `name` writes for the run in `run_dir` when not told:
    inside the run folder. For W&B that is the folder wandb makes its own
    wandb/ in (wandb.init(dir=...)), so its files land in RUN_DIR/wandb/ too."""
    run_dir = Path(run_dir)
    return run_dir if check_tracker(name) == "wandb" else run_dir / name


def open_tracker(name: str, run_dir: str | Path, config: dict[str, Any], run_name: str,
                 out: Path | None = None, fresh: bool = False) -> Tracker:
    """Open tracker `name` for the run in `run_dir` (see default_out; for
    MLflow an `out` folder, else MLFLOW_TRACKING_URI, else RUN_DIR/mlflow/).
    fresh=True (an export): TensorBoard replaces the folder's earlier event
    files. Raises UsageError when the tracker's library is missing."""
    check_tracker(name)
    run_dir = Path(run_dir)
    if name == "tensorboard":
        from lpc_engine.trackers.tb_writer import TensorBoardTracker
        return TensorBoardTracker(Path(out) if out is not None else default_out(name, run_dir), fresh=fresh)
    if name == "wandb":
        from lpc_engine.trackers.wandb_writer import WandbTracker
        return WandbTracker(Path(out) if out is not None else default_out(name, run_dir), config, run_name)
    from lpc_engine.trackers.mlflow_writer import MlflowTracker
    return MlflowTracker(run_dir, run_name, Path(out) if out is not None else None)


__all__ = ["TRACKERS", "Tracker", "check_tracker", "parse_log_to", "require_installed", "default_out",
           "open_tracker"]
