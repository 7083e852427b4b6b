"""What every tracker backend offers, and the one way a missing library is
reported: a UsageError naming the pip extra, so `lpc run --log-to wandb`
without wandb is bad usage (exit 2), not a traceback."""

from __future__ import annotations

import importlib
import importlib.util
from collections.abc import Sequence
from types import ModuleType
from typing import Protocol

from lpc_engine.errors import UsageError
from lpc_engine.trackers.mapping import Record

# tracker -> (the module it imports, the pip extra that installs it)
LIBRARIES = {"tensorboard": ("tensorboard", "tensorboard"), "wandb": ("wandb", "wandb"),
             "mlflow": ("mlflow", "mlflow")}


class Tracker(Protocol):
    name: str
    location: str  # where its records go (a folder or a tracking URI), for messages

    def write(self, records: Sequence[Record]) -> None:
        """The records of one event, in order."""

    def close(self) -> None:
        """Flush and release; the tracker takes no writes afterwards."""


def missing(name: str) -> UsageError:
    module, extra = LIBRARIES[name]
    return UsageError(f"{name}: the {module} package is not installed: pip install 'lpc-studio[{extra}]'")


def installed(name: str) -> bool:
    """True if the tracker's library can be imported (without importing it:
    wandb and mlflow take about half a second)."""
    return importlib.util.find_spec(LIBRARIES[name][0]) is not None


def require(name: str, module: str | None = None) -> ModuleType:
    """Import the library of tracker `name` (or one of its modules); a
    UsageError naming the extra if it is not installed."""
    try:
        return importlib.import_module(module or LIBRARIES[name][0])
    except ImportError:
        raise missing(name) from None


def one_line(exc: BaseException, limit: int = 300) -> str:
    """An error as one short line: what an alert or a CLI message can hold."""
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text if len(text) <= limit else text[:limit - 3] + "..."
