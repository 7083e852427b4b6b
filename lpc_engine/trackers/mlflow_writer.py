"""MLflow: metrics by step, the flattened config as parameters and as an
artifact, the run's end as its status. The `mlflow` extra (mlflow-skinny
is enough: it holds the client and the local file store).

Where: `out` when given (a local file store in that folder), else
MLFLOW_TRACKING_URI when set (a server, a database, a folder), else a file
store in RUN_DIR/mlflow/ (`mlflow ui --backend-store-uri file:RUN_DIR/mlflow`
shows it).
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from lpc_engine.trackers.base import require
from lpc_engine.trackers.mapping import ConfigRecord, Final, Record, Scalar

EXPERIMENT = "lpc-studio"
RUN_DIR_TAG = "lpc.run_dir"  # which run folder an MLflow run came from
STATUS_TAG = "lpc.status"  # our status (stopped, diverged) where MLflow has fewer
# MLflow's own limits (mlflow.utils.validation): longer values are refused.
MAX_PARAM_LENGTH = 6000
PARAMS_PER_BATCH = 100
METRICS_PER_BATCH = 1000
_TERMINAL = {"finished": "FINISHED", "stopped": "KILLED"}  # else FAILED


def tracking_uri(run_dir: Path, out: Path | None) -> str:
    """The store this export or live run writes to (see the module doc)."""
    if out is not None:
        return Path(out).resolve().as_uri()
    return os.environ.get("MLFLOW_TRACKING_URI") or (Path(run_dir) / "mlflow").resolve().as_uri()


def _allow_file_store(uri: str) -> None:
    # MLflow 3 refuses its file store unless MLFLOW_ALLOW_FILE_STORE is set
    # ("maintenance mode"), and the database store needs SQLAlchemy, which
    # mlflow-skinny lacks: for a local folder the file store is the one there
    # is. setdefault: a user who set the variable keeps their choice.
    if urlparse(uri).scheme in ("", "file"):
        os.environ.setdefault("MLFLOW_ALLOW_FILE_STORE", "true")


class MlflowTracker:
    """One MLflow run in experiment "lpc-studio", named after the run folder.
    Each export is a run of its own, tagged with the folder it came from."""

    name = "mlflow"

    def __init__(self, run_dir: Path, run_name: str, out: Path | None = None):
        require(self.name)
        client_module = require(self.name, "mlflow.tracking")
        self._entities = require(self.name, "mlflow.entities")
        self.location = uri = tracking_uri(run_dir, out)
        _allow_file_store(uri)
        self._client = client = client_module.MlflowClient(tracking_uri=uri)
        run = client.create_run(self._experiment(), run_name=run_name,
                                tags={RUN_DIR_TAG: str(Path(run_dir).resolve())})
        self.run_id = run.info.run_id
        self._params: set[str] = set()

    def _experiment(self) -> str:
        found = self._client.get_experiment_by_name(EXPERIMENT)
        if found is not None:
            return found.experiment_id
        try:
            return self._client.create_experiment(EXPERIMENT)
        except Exception:  # another process made it first (a sweep logging to one server)
            found = self._client.get_experiment_by_name(EXPERIMENT)
            if found is None:
                raise
            return found.experiment_id

    def write(self, records: Sequence[Record]) -> None:
        now = int(time.time() * 1000)
        metrics = [self._entities.Metric(r.tag, r.value, now, r.step) for r in records if isinstance(r, Scalar)]
        for i in range(0, len(metrics), METRICS_PER_BATCH):
            self._client.log_batch(self.run_id, metrics=metrics[i:i + METRICS_PER_BATCH])
        for r in records:
            if isinstance(r, ConfigRecord):
                self._log_config(r)
            elif isinstance(r, Final):
                self._log_final(r)

    def _log_config(self, r: ConfigRecord) -> None:
        # Parameters cannot change once logged (MLflow refuses): a resumed
        # session's changed fields (epochs) show in config.json, kept current.
        new = {k: _param_value(v) for k, v in r.params.items() if k not in self._params}
        Param = self._entities.Param
        items = [Param(k, v) for k, v in new.items()]
        for i in range(0, len(items), PARAMS_PER_BATCH):
            self._client.log_batch(self.run_id, params=items[i:i + PARAMS_PER_BATCH])
        self._params.update(new)
        self._client.log_text(self.run_id, r.text, "config.json")

    def _log_final(self, r: Final) -> None:
        self._client.log_text(self.run_id, json.dumps(r.summary, indent=2, default=str), "summary.json")
        self._client.set_tag(self.run_id, STATUS_TAG, r.status)
        self._client.set_terminated(self.run_id, _TERMINAL.get(r.status, "FAILED"))

    def close(self) -> None:
        # A run exported while it still trains stays RUNNING in MLflow: that
        # is what it was; `lpc export --follow` waits for its end instead.
        pass


def _param_value(value: Any) -> str:
    text = value if isinstance(value, str) else json.dumps(value)
    return text[:MAX_PARAM_LENGTH]
