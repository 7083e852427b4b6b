"""LPC Studio's engine: training with latent point collapse and the paper's
measurements, importable from Python. Never imports a UI toolkit."""

from lpc_engine.config import RunConfig
from lpc_engine.config_io import build_config, read_config_file
from lpc_engine.errors import ConfigError, DataError, UsageError
from lpc_engine.events import (Alert, CheckpointSaved, EpochEnd, Event, LatentSample, MetricsComputed,
                               RobustnessComputed, RunFailed, RunFinished, RunStarted)
from lpc_engine.runs.load import LoadedRun, load_run
from lpc_engine.presets import PRESETS
from lpc_engine.training.runner import BackgroundRun
from lpc_engine.training.train import Control, train

__all__ = [
    "RunConfig", "build_config", "read_config_file", "ConfigError", "DataError", "UsageError",
    "Alert", "CheckpointSaved", "EpochEnd", "Event", "LatentSample", "MetricsComputed",
    "RobustnessComputed", "RunFailed", "RunFinished", "RunStarted", "PRESETS", "Control", "train",
    "BackgroundRun", "LoadedRun", "load_run",
]
