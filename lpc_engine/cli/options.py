"""Option help written once: a config field's `doc` (config.py) is its
flag's help in `lpc run --help` and `lpc sweep --help`, and its label and
help in the TUI's form."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.markup import escape

from lpc_engine.config import leaf_fields
from lpc_engine.data.datasets import DATASETS
from lpc_engine.errors import UsageError
from lpc_engine.model.backbones import BACKBONES
from lpc_engine.presets import PRESETS

# Fields whose allowed values are names defined outside the config.
_NAMES = {"preset": tuple(PRESETS), "dataset": DATASETS, "backbone": tuple(BACKBONES)}


def field_help(name: str) -> str:
    """The help of the flag of config field `name`: its doc, with the
    allowed values where there is a fixed set (Rich markup escaped, so
    that `[gamma]` or `pip install 'x[extra]'` show as written)."""
    meta = leaf_fields()[name][1].metadata
    text = meta["doc"]
    names = meta.get("choices") or _NAMES.get(name)
    if names:
        text += f" ({', '.join(names)})"
    return escape(text[0].upper() + text[1:] + ".")


def runs_dir_option(help_text: str = "Folder holding the runs."):
    """--runs-dir, defaulting to $LPC_RUNS_DIR, else ./runs."""
    return typer.Option("runs", "--runs-dir", envvar="LPC_RUNS_DIR", help=help_text)


def absolute_path(path: str) -> str:
    """Runs are resumed and loaded from anywhere: keep absolute data paths."""
    try:
        return str(Path(path).expanduser().resolve()) if path else path
    except (OSError, RuntimeError, ValueError) as exc:  # a loop of links, an unknown ~user
        raise UsageError(f"data_dir: cannot resolve {path!r}: {exc}") from None
