"""`lpc-tui` (and `lpc tui`): the terminal UI's command line (Typer).

Bad options exit 2 with one line on stderr, like `lpc` (DESIGN.md)."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Annotated, Literal, Optional

import typer

from lpc_engine import __version__
from lpc_engine.config import PROFILES
from lpc_engine.config_io import build_config, read_config_file
from lpc_engine.data.datasets import DATASETS
from lpc_engine.errors import UsageError
from lpc_engine.presets import PRESETS

app = typer.Typer(help="LPC Studio's terminal UI: configure, run and watch LPC training.")


def _print_version(wanted: bool) -> None:
    if wanted:
        sys.stdout.write(f"lpc-tui {__version__}\n")
        raise typer.Exit()


@app.command()
def tui(
    runs_dir: Annotated[str, typer.Option(
        "--runs-dir", envvar="LPC_RUNS_DIR", help="Folder holding the runs (env LPC_RUNS_DIR).")] = "runs",
    preset: Annotated[Optional[Literal[tuple(PRESETS)]], typer.Option(
        case_sensitive=False, help="Architecture of Table III to start from.")] = None,
    dataset: Annotated[Optional[Literal[DATASETS]], typer.Option(help="Dataset to start from.")] = None,
    profile: Annotated[Optional[Literal[PROFILES]], typer.Option(
        help="The dataset's recipe: default, or quick.")] = None,
    config: Annotated[Optional[Path], typer.Option("--config", help="TOML (or JSON) file of config fields.")] = None,
    device: Annotated[Optional[str], typer.Option(help="auto, cpu, cuda, cuda:N.")] = None,
    data_dir: Annotated[Optional[str], typer.Option(help="Dataset folder (torchvision) or .npz file.")] = None,
    download: Annotated[Optional[bool], typer.Option(
        "--download/--no-download", help="Let torchvision download the dataset into the data dir.")] = None,
    version: Annotated[bool, typer.Option("--version", is_eager=True, callback=_print_version,
                                          help="Print the version and exit.")] = False,
) -> None:
    """Open the app; the configure pane starts from these options."""
    file_values = read_config_file(config) if config else None
    flags = {k: v for k, v in dict(preset=preset, dataset=dataset, profile=profile, device=device,
                                   data_dir=data_dir, download=download).items() if v is not None}
    build_config(file_values, flags)  # bad options fail here, before the screen is taken over
    from lpc_tui.app import LpcApp  # Textual loads only once the options are known good
    LpcApp(runs_dir=runs_dir, file_values=file_values, flags=flags).run()


def main(argv: list[str] | None = None) -> int:
    try:
        code = app(args=argv, prog_name="lpc-tui", standalone_mode=False)
    except UsageError as exc:
        return _fail(str(exc))
    except typer.TyperException as exc:
        message = exc.format_message() if hasattr(exc, "format_message") else str(exc)
        message = message.replace("Value error, ", "")  # Typer's wording for a bad choice
        return _fail(f"{message} (see lpc-tui --help)")
    return code if isinstance(code, int) else 0


def _fail(message: str) -> int:
    sys.stderr.write("lpc-tui: error: " + " ".join(message.split()) + "\n")
    return 2


if __name__ == "__main__":
    sys.exit(main())
