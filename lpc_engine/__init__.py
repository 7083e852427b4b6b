"""LPC Studio's engine: training with latent point collapse and the paper's
measurements, importable from Python. Never imports a UI toolkit."""

from importlib.metadata import PackageNotFoundError, version as _version

try:
    __version__ = _version("lpc-studio")
except PackageNotFoundError:  # a source tree that was never installed
    __version__ = "0+unknown"

from lpc_engine.components import (METRIC_NAMES, DeepFoolResult, GammaSchedule, LatentPenalty, LPCHead,
                                   ModelOutput, deepfool, latent_metrics, latent_penalty)
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
    # the method's pieces, for one's own training loop (components.py)
    "LPCHead", "ModelOutput", "LatentPenalty", "latent_penalty", "GammaSchedule", "latent_metrics",
    "METRIC_NAMES", "deepfool", "DeepFoolResult", "__version__",
]
