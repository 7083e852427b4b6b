"""`lpc`: the headless command line (Typer).

Exit codes (DESIGN.md): 0 success, 1 the run failed (diverged, or the runs
directory stopped taking writes in mid-run: one line on stderr, the last
checkpoint intact) or was stopped before its last epoch, 2 bad usage or bad
input (one line on stderr, nothing written). `--json` prints one JSON object
on stdout and nothing else there; progress goes to stderr.
"""

from __future__ import annotations

import dataclasses
import json
import subprocess
import sys
from pathlib import Path
from collections.abc import Callable
from typing import Annotated, Optional

import typer
from rich.console import Console

from lpc_engine import __version__
from lpc_engine.cli.analyze import analyze, eval_run
from lpc_engine.cli.export import export
from lpc_engine.cli.nproc import run_processes
from lpc_engine.cli.options import (BackboneName, DatasetName, PlacementName, PrecisionName, PresetName,
                                    ProfileName, RunsDir, absolute_path, field_option)
from lpc_engine.cli.sweep import report, sweep
from lpc_engine.cli.render import ProgressView, final_event_status, runs_table, summary_table
from lpc_engine.config_io import build_config, dumps_toml, read_config_file
from lpc_engine.errors import StorageError, UsageError
from lpc_engine.runs.control import request
from lpc_engine.runs.lock import holder, writer_alive
from lpc_engine.runs.reader import RunReader, list_runs
from lpc_engine.runs.store import default_run_name, json_safe, run_path
from lpc_engine.config import RunConfig, to_dict, to_flat
from lpc_engine.parallel.distributed import World
from lpc_engine.config import RESUMABLE_CHANGES
from lpc_engine.training.headless import last_of, train_headless
from lpc_engine.training.train import resume_config

app = typer.Typer(no_args_is_help=False, help="LPC Studio: train and measure latent point collapse.")


def _print_version(wanted: bool) -> None:
    if wanted:
        sys.stdout.write(f"lpc {__version__}\n")
        raise typer.Exit()


@app.callback()
def _options(version: Annotated[bool, typer.Option("--version", is_eager=True, callback=_print_version,
                                                   help="Print the version and exit.")] = False) -> None:
    """LPC Studio: train and measure latent point collapse."""


@app.command()
def run(
    preset: Annotated[PresetName, field_option("preset", case_sensitive=False)] = None,
    dataset: Annotated[DatasetName, field_option("dataset")] = None,
    profile: Annotated[ProfileName, field_option("profile")] = None,
    backbone: Annotated[BackboneName, field_option("backbone")] = None,
    epochs: Annotated[Optional[int], field_option("epochs")] = None,
    seed: Annotated[Optional[int], field_option("seed")] = None,
    lr: Annotated[Optional[float], field_option("lr")] = None,
    batch_size: Annotated[Optional[int], field_option("batch_size")] = None,
    latent_dim: Annotated[Optional[int], field_option("latent_dim")] = None,
    gamma_init: Annotated[Optional[float], field_option("gamma_init")] = None,
    gamma_factor: Annotated[Optional[float], field_option("gamma_factor")] = None,
    gamma_max: Annotated[Optional[float], field_option("gamma_max")] = None,
    metrics_every: Annotated[Optional[int], field_option("metrics_every")] = None,
    robustness_samples: Annotated[Optional[int], field_option("robustness_samples")] = None,
    checkpoint_every: Annotated[Optional[int], field_option("checkpoint_every")] = None,
    checkpoint_minutes: Annotated[Optional[float], field_option("checkpoint_minutes")] = None,
    data_dir: Annotated[Optional[str], field_option("data_dir")] = None,
    download: Annotated[Optional[bool], field_option("download", "--download/--no-download")] = None,
    device: Annotated[Optional[str], field_option("device")] = None,
    precision: Annotated[PrecisionName, field_option("precision")] = None,
    image_size: Annotated[Optional[int], field_option("image_size")] = None,
    data_placement: Annotated[PlacementName, field_option("data_placement")] = None,
    loader_workers: Annotated[Optional[int], field_option("loader_workers")] = None,
    log_to: Annotated[Optional[str], field_option("log_to")] = None,
    compile_model: Annotated[Optional[bool], field_option("compile", "--compile/--no-compile")] = None,
    runs_dir: RunsDir = "runs",
    name: Annotated[Optional[str], typer.Option(help="Run name (default: preset-dataset-seed-time).")] = None,
    resume: Annotated[bool, typer.Option("--resume", help="Continue the run NAME from its last checkpoint.")] = False,
    overwrite: Annotated[bool, typer.Option("--overwrite", help="Replace an existing run NAME.")] = False,
    config: Annotated[Optional[Path], typer.Option("--config", help="TOML (or JSON) file of config fields.")] = None,
    nproc: Annotated[int, typer.Option("--nproc", min=1, help=(
        "Processes training this run together (DistributedDataParallel): one per GPU, "
        "or CPU processes sharing the cores."))] = 1,
    dry_run: Annotated[bool, typer.Option("--dry-run", help=(
        "Print the resolved config as TOML (JSON with --json) and exit."))] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print the summary as one JSON object.")] = False,
) -> None:
    """Train one run headless; with no options, LPC on digits in well under a minute."""
    flags = dict(preset=preset, dataset=dataset, profile=profile, backbone=backbone, epochs=epochs,
                 seed=seed, lr=lr, batch_size=batch_size, latent_dim=latent_dim, gamma_init=gamma_init,
                 gamma_factor=gamma_factor, gamma_max=gamma_max, metrics_every=metrics_every,
                 robustness_samples=robustness_samples, checkpoint_every=checkpoint_every,
                 checkpoint_minutes=checkpoint_minutes,
                 data_dir=data_dir, download=download, device=device, precision=precision,
                 compile=compile_model, image_size=image_size, data_placement=data_placement,
                 loader_workers=loader_workers, log_to=log_to)
    if resume and overwrite:
        raise UsageError("--resume continues a run and --overwrite replaces it: give one of them")
    world = World.current()
    if resume:
        run_dir, cfg = _resume_target(runs_dir, name, flags, config)
    else:
        cfg = build_config(read_config_file(config) if config else None, flags)
        cfg = dataclasses.replace(cfg, data=dataclasses.replace(cfg.data, data_dir=absolute_path(cfg.data.data_dir)))
        name = name or default_run_name(cfg.model.preset, cfg.data.dataset, cfg.seed)
        run_dir = run_path(runs_dir, world.same_text(name))  # under torchrun: rank 0's clock
    if dry_run:  # with --json, the same config as one JSON object (config.json's form)
        sys.stdout.write(json.dumps(to_dict(cfg)) + "\n" if as_json else dumps_toml(cfg))
        return
    if nproc > 1:
        if world.size > 1:
            raise UsageError("--nproc: this is already one of several processes (torchrun); "
                             "give the number of processes to torchrun only")
        raise typer.Exit(run_processes(nproc, cfg, run_dir, resume, overwrite, as_json))
    code = train_and_report(cfg, run_dir, resume, overwrite, as_json)
    if code:
        raise typer.Exit(code)


def train_and_report(cfg: RunConfig, run_dir: Path, resume: bool, overwrite: bool, as_json: bool) -> int:
    """Train in this process with progress on stderr, then the summary on
    stdout (rank 0 only, on several processes); the exit code."""
    world = World.current()
    stderr = Console(stderr=True, quiet=not world.is_main)
    events = train_headless(cfg, run_dir, resume, overwrite, notify=stderr.print)
    with ProgressView(stderr) as view:
        last = last_of(events, view.show)
    if not world.is_main:  # one of several processes: it did its part; rank 0 reports the run
        return 0
    summary = getattr(last, "summary", {})
    if as_json:
        sys.stdout.write(json.dumps(json_safe({**summary, "run_dir": str(run_dir)})) + "\n")
    else:
        Console().print(summary_table(summary, str(run_dir)))
    return 0 if final_event_status(last) == "finished" else 1


def _resume_target(runs_dir: str, name: str | None, flags: dict,
                   config: Path | None) -> tuple[Path, RunConfig]:
    """The run to resume and its saved config; only the RESUMABLE_CHANGES
    flags (--epochs, --device, --precision, --compile) may change."""
    may_change = ", ".join(_flag(k) for k in RESUMABLE_CHANGES)
    if not name:
        raise UsageError("resume: give --name of the run to resume")
    if config is not None:
        raise UsageError(f"resume: --config cannot change a saved run (only {may_change})")
    run_dir = run_path(runs_dir, name)
    cfg = resume_config(run_dir, **{k: flags.get(k) for k in RESUMABLE_CHANGES})
    saved = {k: v for k, v in to_flat(cfg).items()}
    changed = sorted(k for k, v in flags.items() if v is not None and k not in RESUMABLE_CHANGES
                     and _normal(k, v) != saved[k])
    if changed:
        what = ", ".join(f"{_flag(k)} (saved: {saved[k]})" for k in changed)
        raise UsageError(f"resume: {what} differs from the saved run; only {may_change} may change")
    return run_dir, cfg


def _flag(field_name: str) -> str:
    return "--" + field_name.replace("_", "-")


def _normal(field_name: str, value: object) -> object:
    """A flag's value as the resolved config stores it."""
    if field_name == "preset" and isinstance(value, str):
        return value.lower()
    if field_name == "data_dir" and isinstance(value, str):
        return absolute_path(value)
    return value


app.command("analyze")(analyze)
app.command("eval")(eval_run)
app.command("sweep")(sweep)
app.command("report")(report)
app.command("export")(export)


@app.command("runs")
def runs_cmd(runs_dir: RunsDir = "runs",
             as_json: Annotated[bool, typer.Option("--json", help="Print the runs as JSON.")] = False) -> None:
    """List the runs in a runs directory, newest first."""
    runs = list_runs(runs_dir)
    if as_json:
        sys.stdout.write(json.dumps(json_safe({"runs_dir": runs_dir, "runs": runs})) + "\n")
    elif not runs:
        Console(stderr=True).print(f"no runs in {runs_dir}")
    else:
        console = Console()
        table, left_out = runs_table(runs, console)
        console.print(table)
        if left_out:
            sys.stdout.flush()  # the note after the table, also when both go to one pipe
            Console(stderr=True).print(f"left out to fit {console.width} columns: {', '.join(left_out)} "
                                       "(--json has them)", style="dim")


@app.command("stop")
def stop_cmd(run_dir: Annotated[Path, typer.Argument(help="The run directory of a running run.")],
             pause: Annotated[bool, typer.Option("--pause", help="Pause it instead (resume with --resume).")] = False,
             resume: Annotated[bool, typer.Option("--resume", help="Resume a paused run.")] = False) -> None:
    """Ask a running run to stop (it saves a checkpoint first), whoever trains it."""
    if pause and resume:
        raise UsageError("stop: give --pause or --resume, not both")
    if not RunReader(run_dir).exists():
        raise UsageError(f"stop: {run_dir} is not a run directory (no config.json)")
    writer = holder(run_dir)
    if writer is None or not writer_alive(writer):
        raise UsageError(f"stop: run {run_dir} is not running")
    what = "pause" if pause else "resume" if resume else "stop"
    request(run_dir, what)
    Console(stderr=True).print(f"asked {run_dir} to {what} ({writer.describe()})"
                               + ("; it saves a checkpoint at its next step" if what == "stop" else ""))


@app.command("tui", context_settings={"allow_extra_args": True, "ignore_unknown_options": True},
             add_help_option=False)
def tui_cmd(ctx: typer.Context) -> None:
    """The terminal UI, `lpc-tui` (same options; see lpc tui --help)."""
    # A child process, not an import: the engine never imports the UI.
    code = subprocess.call([sys.executable, "-m", "lpc_tui", *ctx.args])
    if code:
        raise typer.Exit(code)


def main(argv: list[str] | None = None) -> int:
    """Entry point: every usage error becomes one line on stderr and exit 2."""
    return guarded(lambda: app(args=argv, prog_name="lpc", standalone_mode=False))


def guarded(command: Callable[[], object]) -> int:
    """Run `command`; its exit code, with the errors of DESIGN.md's contract
    as one line on stderr: 2 for bad usage, 1 for a store that stopped
    taking writes, 130 when interrupted."""
    try:
        code = command()
    except UsageError as exc:
        return _fail(str(exc), 2)
    except StorageError as exc:  # in mid-run: what is on disk is consistent; --resume goes on
        return _fail(f"{exc}; the run stopped (resume it with --resume once fixed)", 1)
    except typer.TyperException as exc:
        message = exc.format_message() if hasattr(exc, "format_message") else str(exc)
        message = message.replace("Value error, ", "")  # Typer's wording for a bad choice
        return _fail(f"{message} (see lpc --help)", getattr(exc, "exit_code", 2))
    except KeyboardInterrupt:
        return _fail("interrupted", 130)
    return code if isinstance(code, int) else 0


def _fail(message: str, code: int) -> int:
    sys.stderr.write("lpc: error: " + " ".join(message.split()) + "\n")
    return code


if __name__ == "__main__":
    sys.exit(main())
