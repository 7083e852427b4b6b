"""LPC Studio's engine: training with latent point collapse and the paper's
measurements, importable from Python. Never imports a UI toolkit."""

from .config import RunConfig
from .config_io import build_config, read_config_file
from .errors import ConfigError, DataError, UsageError
from .events import (Alert, CheckpointSaved, EpochEnd, Event, LatentSample, MetricsComputed,
                     RobustnessComputed, RunFailed, RunFinished, RunStarted)
from .load import LoadedRun, load_run
from .presets import PRESETS
from .runner import BackgroundRun
from .train import Control, train

__all__ = [
    "RunConfig", "build_config", "read_config_file", "ConfigError", "DataError", "UsageError",
    "Alert", "CheckpointSaved", "EpochEnd", "Event", "LatentSample", "MetricsComputed",
    "RobustnessComputed", "RunFailed", "RunFinished", "RunStarted", "PRESETS", "Control", "train",
    "BackgroundRun", "LoadedRun", "load_run",
]
