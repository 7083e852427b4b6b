"""`lpc export RUN_DIR --to tensorboard|wandb|mlflow [--out DIR] [--follow]`:
a finished or running run, written to an experiment tracker from its folder
(lpc_engine/trackers/export.py). One line on stderr says how many events
went where; a missing tracker library is bad usage (exit 2), naming its
pip extra; a tracker that fails in mid-export is exit 1, in one line."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Literal, Optional

import typer

from lpc_engine.errors import UsageError
from lpc_engine.trackers import TRACKERS
from lpc_engine.trackers.base import Tracker, one_line
from lpc_engine.trackers.export import export_run

TrackerName = Literal[TRACKERS]  # Typer checks the choice: a bad one exits 2, listing them


def next_step(to: str, where: str) -> str:
    """The command that shows (or uploads) what was written."""
    if to == "tensorboard":
        return f"tensorboard --logdir {where}"
    if to == "wandb":
        return f"wandb sync {where}"
    # MLflow 3 serves a file store only when allowed (trackers/mlflow_writer.py).
    allow = "MLFLOW_ALLOW_FILE_STORE=true " if where.startswith("file:") else ""
    return f"{allow}mlflow ui --backend-store-uri {where}"


def export(
    run_dir: Annotated[Path, typer.Argument(help="A run directory.")],
    to: Annotated[TrackerName, typer.Option("--to", help="The tracker to write to.")],
    out: Annotated[Optional[Path], typer.Option(
        "--out", help="Where the tracker's files go (default: inside the run folder, RUN_DIR/tensorboard, "
                      "RUN_DIR/wandb, RUN_DIR/mlflow; MLflow: $MLFLOW_TRACKING_URI when set).")] = None,
    follow: Annotated[bool, typer.Option("--follow", help="Keep following a running run until it ends.")] = False,
) -> None:
    """Write a run to TensorBoard, W&B (offline; `wandb sync` uploads it) or MLflow."""
    where: list[str] = []

    def opened(tracker: Tracker) -> None:
        where.append(tracker.location)
        if follow:
            sys.stderr.write(f"lpc: following {run_dir} into {tracker.location} (Ctrl-C stops)\n")

    try:
        written = export_run(run_dir, to, out, follow=follow, on_open=opened)
    except (UsageError, KeyboardInterrupt):
        raise  # exit 2 and 130, one line each (app.guarded)
    except Exception as exc:  # noqa: BLE001 - a tracker that failed in mid-export: exit 1, one line
        sys.stderr.write(f"lpc: error: export to {to} failed: {one_line(exc)}\n")
        raise typer.Exit(1) from None
    location = where[0] if where else str(out or run_dir)
    sys.stderr.write(f"lpc: exported {written} events of {run_dir} to {to} at {location} "
                     f"(next: {next_step(to, location)})\n")
