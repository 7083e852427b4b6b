"""`lpc-tui` (and `lpc tui`): the terminal UI's command line (Typer).

Bad options exit 2 with one line on stderr, like `lpc` (DESIGN.md)."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Optional

import typer

from lpc_engine.config_io import build_config, read_config_file
from lpc_engine.errors import UsageError

app = typer.Typer(add_completion=False, help="LPC Studio's terminal UI: configure, run and watch LPC training.")


@app.command()
def tui(
    runs_dir: str = typer.Option(os.environ.get("LPC_RUNS_DIR", "runs"), "--runs-dir",
                                 help="Folder holding the runs (env LPC_RUNS_DIR)."),
    preset: Optional[str] = typer.Option(None, help="Architecture of Table III to start from."),
    dataset: Optional[str] = typer.Option(None, help="Dataset to start from."),
    profile: Optional[str] = typer.Option(None, help="The dataset's recipe: default, or quick."),
    config: Optional[Path] = typer.Option(None, "--config", help="TOML (or JSON) file of config fields."),
    device: Optional[str] = typer.Option(None, help="auto, cpu, cuda, cuda:N."),
    data_dir: Optional[str] = typer.Option(None, help="Dataset folder (torchvision) or .npz file."),
    download: Optional[bool] = typer.Option(None, "--download/--no-download",
                                            help="Let torchvision download the dataset into the data dir."),
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
        return _fail(f"{message} (see lpc-tui --help)")
    return code if isinstance(code, int) else 0


def _fail(message: str) -> int:
    sys.stderr.write("lpc-tui: error: " + " ".join(message.split()) + "\n")
    return 2


if __name__ == "__main__":
    sys.exit(main())
