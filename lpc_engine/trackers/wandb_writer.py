"""Weights & Biases, offline: the run goes into a local folder
(OUT/wandb/offline-run-*/), with no network and no login; `wandb sync
FOLDER` uploads it later. The `wandb` extra.

wandb.init(dir=D) always writes into D/wandb/, so OUT here is the folder
that holds wandb/: the run folder by default, giving RUN_DIR/wandb/.

finish() returns before wandb's service has written the last block of the
run's .wandb file (measured: 98304 of 108214 bytes right after it, all of
it 0.2 s later); the process's exit waits for the service (wandb's own
teardown), so `lpc export` leaves the file whole.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from lpc_engine.trackers.base import require
from lpc_engine.trackers.mapping import ConfigRecord, Final, Histogram, Record, Scalar, summary_scalars

PROJECT = "lpc-studio"
HISTOGRAM_BINS = 64  # wandb's own default, said out loud: at most 512


class WandbTracker:
    """One offline W&B run. Each export is a run of its own (W&B keeps runs
    apart, so none doubles): the message names its folder."""

    name = "wandb"

    def __init__(self, out: Path, config: dict[str, Any], run_name: str):
        self._wandb = wandb = require(self.name)
        Path(out).mkdir(parents=True, exist_ok=True)
        # console="off": wandb would otherwise wrap stdout and stderr, which the
        # CLI's progress bar and the TUI own; no system stats thread, no git.
        settings = wandb.Settings(console="off", silent=True, x_disable_stats=True, disable_git=True,
                                  save_code=False, x_save_requirements=False)
        # reinit="create_new": a user's own wandb run in the same process stays theirs.
        self._run = wandb.init(mode="offline", dir=str(out), project=PROJECT, name=run_name,
                               config=config, settings=settings, reinit="create_new")
        self.location = str(self._run.settings.sync_dir)
        self._exit_code = 0

    def write(self, records: Sequence[Record]) -> None:
        row: dict[str, Any] = {}
        step = None
        for r in records:
            if isinstance(r, Scalar):
                row[r.tag], step = r.value, r.step
            elif isinstance(r, Histogram):
                row[r.tag] = self._wandb.Histogram(r.values, num_bins=HISTOGRAM_BINS)
                step = r.step
            elif isinstance(r, ConfigRecord):
                # A resumed session may change RESUMABLE_CHANGES (epochs, device, ...).
                self._run.config.update(r.config, allow_val_change=True)
            elif isinstance(r, Final):
                self._finish_summary(r)
        if row:
            # One event's records share its epoch: one history row per step
            # (wandb merges rows logged at the same step).
            self._run.log(row, step=step)

    def _finish_summary(self, r: Final) -> None:
        self._run.summary.update({**summary_scalars(r.summary), "status": r.status, "epoch": r.epoch})
        self._exit_code = 1 if r.failed else 0

    def close(self) -> None:
        self._run.finish(exit_code=self._exit_code)
