"""`lpc sweep` and `lpc report`: run the paper's ablation grid and read it
as the paper's tables (registered on the `lpc` app in app.py)."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Literal, Optional

import typer
from rich.console import Console
from rich.markup import escape

from lpc_engine.cli.options import DatasetName, ProfileName, absolute_path, field_option, runs_dir_option

from lpc_engine.config_io import read_config_file
from lpc_engine.presets import PRESETS
from lpc_engine.errors import UsageError
from lpc_engine.data.datasets import EMBEDDED
from lpc_engine.runs.reader import RunReader
from lpc_engine.study.report import collect, collect_dirs, correlation, curves, pooling_warnings, table_rows
from lpc_engine.cli.report_charts import curve_charts, scatter_chart
from lpc_engine.study.report_render import curves_csv, report_csv, report_json, report_markdown
from lpc_engine.runs.store import atomic_write, json_safe, run_path
from lpc_engine.study.sweep import expand_presets, grid, parse_list, parse_set, point_state
from lpc_engine.cli.sweep_exec import Job, run_jobs
from lpc_engine.cli.sweep_submitit import ClusterOptions, run_submitit


def _preset_names(text: str) -> str:
    """--presets: each name must be one of Table III's (or 'all')."""
    try:
        expand_presets(text)
    except UsageError as exc:
        raise typer.BadParameter(str(exc)) from None
    return text


SweepRunsDir = runs_dir_option("Folder holding the sweep folder.")
EXECUTORS = ("auto", "local", "slurm")


def sweep(
    presets: Annotated[str, typer.Option(
        callback=_preset_names, help=f"Comma-separated presets, or 'all' for the 11 of Table III "
        f"({', '.join(PRESETS)}).")] = "lpc",
    seeds: Annotated[str, typer.Option(help="Comma-separated seeds.")] = "0",
    lrs: Annotated[Optional[str], typer.Option(
        help="Comma-separated learning rates (default: the dataset's).")] = None,
    set_: Annotated[list[str], typer.Option(
        "--set", help="Any config field over values: field=v1,v2 (repeatable).")] = [],
    dataset: Annotated[DatasetName, field_option("dataset")] = None,
    profile: Annotated[ProfileName, field_option("profile")] = None,
    epochs: Annotated[Optional[int], field_option("epochs")] = None,
    device: Annotated[Optional[str], field_option("device")] = None,
    config: Annotated[Optional[Path], typer.Option(
        "--config", help="TOML (or JSON) file of base config fields.")] = None,
    runs_dir: SweepRunsDir = "runs",
    name: Annotated[Optional[str], typer.Option(help="Sweep folder name (default: sweep-DATASET).")] = None,
    jobs: Annotated[int, typer.Option("--jobs", min=1, max=256, help="Runs at a time, as separate processes.")] = 1,
    executor: Annotated[Literal[EXECUTORS], typer.Option(help=escape(
        "auto (this machine, --jobs at a time), or through submitit: local, slurm "
        "(pip install 'lpc-studio[cluster]')."))] = "auto",
    partition: Annotated[Optional[str], typer.Option(help="slurm: the partition.")] = None,
    gpus: Annotated[int, typer.Option(min=0, max=64, help="slurm: GPUs per run.")] = 1,
    cpus: Annotated[int, typer.Option(min=1, max=512, help="slurm: CPUs per run.")] = 4,
    time_limit: Annotated[int, typer.Option(
        min=1, help="slurm/local: minutes per run; rerun the sweep to resume runs that hit it.")] = 24 * 60,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="List the grid and what would run, then exit.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print the outcome as one JSON object.")] = False,
) -> None:
    """Run a grid of presets x seeds x learning rates (x --set fields); rerun to finish what is missing."""
    axes: dict[str, list] = {"preset": expand_presets(presets)}
    if lrs is not None:
        axes["lr"] = parse_list(lrs, "lr")
    axes["seed"] = parse_list(seeds, "seed")
    flags = {k: v for k, v in dict(dataset=dataset, profile=profile, epochs=epochs, device=device).items()
             if v is not None}
    for spec in set_:
        field_name, values = parse_set(spec)
        if field_name in axes or field_name in flags:
            raise UsageError(f"--set {field_name}: already given by its own option")
        if len(values) > 1:
            axes[field_name] = values
        else:  # one value: the same for every run, so not part of the run names
            flags[field_name] = values[0]
    if flags.get("data_dir"):  # runs resume from anywhere: keep data paths absolute
        flags["data_dir"] = absolute_path(flags["data_dir"])
    points = grid(axes, read_config_file(config) if config else None, flags)
    _check_data_dirs(points)
    sweep_dir = run_path(runs_dir, name or f"sweep-{points[0].cfg.data.dataset}")
    todo = [Job(p, point_state(sweep_dir, p)) for p in points]
    for job in todo:
        job.status = "done" if job.state == "done" else "pending"
        job.epoch = job.point.cfg.epochs if job.state == "done" else 0
    stderr = Console(stderr=True)
    if dry_run:
        for job in todo:
            sys.stdout.write(f"{job.point.name}\t{job.state}\n")
        return
    _create(sweep_dir)
    if executor == "auto":
        run_jobs(sweep_dir, todo, jobs, stderr)
    else:
        run_submitit(sweep_dir, todo, ClusterOptions(executor, partition, gpus, cpus, time_limit), stderr)
    if not _outcome(sweep_dir, todo, as_json, stderr):
        raise typer.Exit(1)


def _outcome(sweep_dir: Path, todo: list[Job], as_json: bool, stderr: Console) -> bool:
    """Say how the sweep went (one JSON object with --json); True if every
    point finished (or was trained by another sweep over the folder)."""
    failed = [j.point.name for j in todo if j.status == "failed"]
    stopped = [j.point.name for j in todo if j.status == "stopped"]
    taken = [j.point.name for j in todo if j.status == "taken"]
    if taken:
        stderr.print(f"{len(taken)} run(s) trained by another sweep over {sweep_dir}: {', '.join(taken)}")
    if as_json:
        sys.stdout.write(json.dumps({"sweep_dir": str(sweep_dir), "runs": len(todo),
                                     "ran": sum(j.state != "done" for j in todo), "failed": failed,
                                     "taken": taken, **({"stopped": stopped} if stopped else {})}) + "\n")
    if stopped:
        stderr.print(f"stopped: {', '.join(stopped)} (a checkpoint saved); rerun the sweep to resume")
    if failed:
        stderr.print(f"{len(failed)} run(s) failed; logs in {sweep_dir / '.logs'}; rerun the sweep to retry")
    return not (failed or stopped)


def _check_data_dirs(points: list) -> None:
    """A dataset read from files with no data_dir: refused before any point
    starts (each would fail alone, as `lpc run` refuses it)."""
    for point in points:
        data = point.cfg.data
        if data.dataset not in EMBEDDED and not data.data_dir:
            raise UsageError(f"{data.dataset} needs data_dir (--set data_dir=PATH, or data_dir in the "
                             f"--config file); {point.name} has none")


def _create(sweep_dir: Path) -> None:
    try:
        sweep_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UsageError(f"runs dir: cannot create {sweep_dir}: {exc.strerror}") from None


def report(
    runs_dir: Annotated[Path, typer.Argument(help="A sweep folder (or any folder of runs).")],
    fmt: Annotated[Literal["md", "csv", "json"], typer.Option("--format", help="md, csv or json.")] = "md",
    best_lr: Annotated[bool, typer.Option("--best-lr", help=(
        "Per architecture, keep the learning rate with the best mean final test accuracy "
        "(as the paper does)."))] = False,
    plots: Annotated[Optional[bool], typer.Option("--plots/--no-plots", help=(
        "Fig. 3 and Figs. 4-5 as terminal charts after the tables (default: with md)."))] = None,
    curves_file: Annotated[Optional[Path], typer.Option(
        "--curves-csv", help="Write the curves over epochs here.")] = None,
) -> None:
    """The paper's Tables I, II and IV (mean ± std over seeds), Fig. 3's correlation, Figs. 4-5's curves."""
    if not runs_dir.is_dir():
        raise UsageError(f"report: {runs_dir} is not a folder")
    # A run's own folder: its tables alone (n = 1).
    results, skipped = collect_dirs([runs_dir]) if RunReader(runs_dir).exists() else collect(runs_dir)
    if not results:
        inner = sorted(d.name for d in runs_dir.iterdir() if d.is_dir() and collect(d)[0])
        hint = f"; sweeps inside: {', '.join(inner)}" if inner else ""
        raise UsageError(f"report: no finished runs in {runs_dir}{hint}")
    rows = table_rows(results, best_lr=best_lr)
    warnings = pooling_warnings(rows)
    for line in warnings:
        sys.stderr.write(f"lpc: warning: {line}\n")
    corr, series = correlation(results), curves(results, rows)
    if curves_file is not None:
        try:
            atomic_write(curves_file, curves_csv(series).encode())
        except OSError as exc:
            raise UsageError(f"--curves-csv: cannot write {curves_file}: {exc.strerror or exc}") from None
    if fmt == "json":
        extra = {"runs_dir": str(runs_dir), "best_lr": best_lr, "skipped": skipped,
                 "warnings": warnings, "correlation": corr, "curves": series}
        sys.stdout.write(json.dumps(json_safe(report_json(rows, extra))) + "\n")
        return
    sys.stdout.write(report_csv(rows) if fmt == "csv" else report_markdown(rows, corr, skipped))
    if plots or (plots is None and fmt == "md"):
        sys.stdout.write("\n" + scatter_chart(corr) + "\n" + curve_charts(series))
