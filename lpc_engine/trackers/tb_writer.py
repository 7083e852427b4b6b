"""TensorBoard: scalars, per-node histograms of z and the config as text,
into an event file of RUN_DIR/tensorboard/ (`tensorboard --logdir RUNS_DIR`
then finds every run). The `tensorboard` extra; torch's own SummaryWriter
writes the file."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from lpc_engine.trackers.base import require
from lpc_engine.trackers.mapping import (ALERTS_TAG, CONFIG_TAG, SUMMARY_TAG, ConfigRecord, Final, Histogram,
                                         Note, Record, Scalar, config_text)

EVENT_FILES = "events.out.tfevents.*"  # the names SummaryWriter gives its files
FLUSH_SECONDS = 10  # a live run's curves reach TensorBoard this late at most


class TensorBoardTracker:
    """One event file in `out`. With fresh=True (an export) the folder's earlier
    event files are removed first: TensorBoard merges every file of a folder,
    so a second copy of the run would draw each curve twice over itself."""

    name = "tensorboard"

    def __init__(self, out: Path, fresh: bool = False):
        require(self.name)  # torch.utils.tensorboard needs the tensorboard package
        self._summary_writer = require(self.name, "torch.utils.tensorboard").SummaryWriter
        self.out = Path(out)
        self.location = str(self.out)
        self.out.mkdir(parents=True, exist_ok=True)
        if fresh:
            for old in self.out.glob(EVENT_FILES):
                old.unlink()
        self._writer = None

    def _open(self, first: Record):
        # Opened on the first record, so that a resumed session (its RunStarted
        # comes first) can tell TensorBoard where it restarts: purge_step drops
        # the earlier session's points from that epoch on, which the resume
        # trains again, instead of drawing both.
        purge = first.start_epoch if isinstance(first, ConfigRecord) and first.start_epoch > 1 else None
        return self._summary_writer(log_dir=str(self.out), flush_secs=FLUSH_SECONDS, purge_step=purge)

    def write(self, records: Sequence[Record]) -> None:
        for record in records:
            if self._writer is None:
                self._writer = self._open(record)
            self._write_one(record)

    def _write_one(self, r: Record) -> None:
        w = self._writer
        if isinstance(r, Scalar):
            w.add_scalar(r.tag, r.value, global_step=r.step)
        elif isinstance(r, Histogram):
            # numpy's "auto" bins follow the data's own spread: a collapsed node's
            # two peaks near +-1e-3 stay apart as well as an uncollapsed one's.
            w.add_histogram(r.tag, r.values, global_step=r.step, bins="auto")
        elif isinstance(r, ConfigRecord):
            w.add_text(CONFIG_TAG, _code_block(r.text), global_step=r.start_epoch)
        elif isinstance(r, Note):
            w.add_text(ALERTS_TAG, r.text, global_step=r.step)
        elif isinstance(r, Final):
            w.add_text(SUMMARY_TAG, _final_text(r), global_step=r.epoch)
            w.flush()  # the run's end is worth seeing at once

    def close(self) -> None:
        if self._writer is not None:
            self._writer.close()


def _code_block(text: str) -> str:
    # TensorBoard renders text as Markdown: indented, JSON keeps its layout.
    return "\n".join("    " + line for line in text.splitlines())


def _final_text(r: Final) -> str:
    head = f"run {r.status} at epoch {r.epoch}" + (f": {r.error}" if r.error else "")
    return f"{head}\n\n" + _code_block(config_text(r.summary))
