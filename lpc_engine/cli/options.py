"""Option help written once: a config field's `doc` (config.py) is its
flag's help in `lpc run --help` and `lpc sweep --help`, and its label and
help in the TUI's form."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal, Optional

import typer
from rich.markup import escape

from lpc_engine.config import PLACEMENTS, PRECISIONS, PROFILES, leaf_fields
from lpc_engine.data.datasets import DATASETS
from lpc_engine.errors import UsageError
from lpc_engine.model.backbones import BACKBONES
from lpc_engine.presets import PRESETS

def field_help(name: str) -> str:
    """The help of the flag of config field `name`: its doc (Rich markup
    escaped, so that `[gamma]` or `pip install 'x[extra]'` show as written)."""
    text = leaf_fields()[name][1].metadata["doc"]
    return escape(text[0].upper() + text[1:] + ".")


def field_option(name: str, *decls: str, **extra: Any) -> Any:
    """The typer.Option of config field `name`, its help from the config;
    `decls` as typer.Option's (e.g. "--compile/--no-compile"). A field with
    fixed values is typed with one of the Literal types below, so Typer
    lists them; the help does not repeat them."""
    return typer.Option(*decls, help=field_help(name), **extra)


# Options with a fixed set of values: Typer checks them (exit 2 listing the
# choices), lists them in --help and completes them in the shell.
PresetName = Optional[Literal[tuple(PRESETS)]]
DatasetName = Optional[Literal[DATASETS]]
BackboneName = Optional[Literal[tuple(BACKBONES)]]
ProfileName = Optional[Literal[PROFILES]]
PrecisionName = Optional[Literal[PRECISIONS]]
PlacementName = Optional[Literal[PLACEMENTS]]


def runs_dir_option(help_text: str = "Folder holding the runs.") -> Any:
    """The type of --runs-dir (its default, "runs", given where it is used),
    read from $LPC_RUNS_DIR when that is set."""
    return Annotated[str, typer.Option("--runs-dir", envvar="LPC_RUNS_DIR", help=help_text)]


RunsDir = runs_dir_option()


def absolute_path(path: str) -> str:
    """Runs are resumed and loaded from anywhere: keep absolute data paths."""
    try:
        return str(Path(path).expanduser().resolve()) if path else path
    except (OSError, RuntimeError, ValueError) as exc:  # a loop of links, an unknown ~user
        raise UsageError(f"data_dir: cannot resolve {path!r}: {exc}") from None
