"""What `lpc` shows on a terminal: a progress bar fed by events, and tables."""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn
from rich.table import Table

from lpc_engine.metrics.columns import columns, fmt
from lpc_engine.events import Alert, EpochEnd, Event, RunFailed, RunFinished, RunStarted


class ProgressView:
    """A rich progress bar on stderr, advanced by each EpochEnd."""

    def __init__(self, console: Console):
        self.console = console
        self.progress = Progress(
            # A short bar, so "epoch 700/700" and the stats fit 80 columns whole.
            TextColumn("epoch"), MofNCompleteColumn(), BarColumn(bar_width=6),
            TextColumn("{task.fields[stats]}"), TimeRemainingColumn(),
            console=console, transient=False,
        )
        self.task = None

    def __enter__(self) -> ProgressView:
        self.progress.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.progress.stop()

    def show(self, event: Event) -> None:
        if isinstance(event, RunStarted):
            done = event.start_epoch - 1
            self.task = self.progress.add_task("train", total=event.epochs, completed=done, stats="")
            where = f" -> {event.run_dir}" if event.run_dir else ""
            on = event.device if event.processes == 1 else f"{event.processes} processes ({event.device})"
            self.console.print(f"training on {on}, {event.num_params:,} parameters, "
                               f"{event.num_train} train / {event.num_test} test samples{where}")
        elif isinstance(event, EpochEnd) and self.task is not None:
            stats = (f"loss {event.loss:.3f} acc {event.train_acc:.3f}/{fmt(event.test_acc, '.3f')}"
                     f" gamma {event.gamma:.3g} |z| {event.latent_norm_mean:.3g}")
            self.progress.update(self.task, completed=event.epoch, stats=stats)
        elif isinstance(event, Alert):
            self.console.print(f"[yellow]alert[/] epoch {event.epoch}: {event.message}")


_SUMMARY_ROWS = (
    ("status", "status", "s"), ("epochs", "epochs_done", "d"), ("test accuracy", "test_acc", ".4f"),
    ("best test accuracy", "best_test_acc", ".4f"), ("train accuracy", "train_acc", ".4f"),
    ("loss", "loss", ".4g"), ("cross-entropy", "ce", ".4g"), ("penalty", "penalty", ".4g"),
    ("gamma", "gamma", ".4g"), ("latent norm mean", "latent_norm_mean", ".4g"),
    ("latent norm CoV", "latent_norm_cov", ".4g"), ("seconds", "seconds", ".1f"),
)


_MEASURED = columns("separation_ratio", "sigma_w_trace_ratio", "gmm_peak_distance_min",
                    "codebook_distinct", "robustness_mean")


def summary_table(summary: dict[str, Any], run_dir: str) -> Table:
    title = f"{summary['preset']} on {summary['dataset']} ({summary['backbone']}, seed {summary['seed']})"
    table = Table(title=title, show_header=False, title_justify="left")
    table.add_column("what")
    table.add_column("value", justify="right")
    for label, key, spec in _SUMMARY_ROWS:
        table.add_row(label, fmt(summary.get(key), spec))
    measured = {**summary.get("metrics", {}), **summary.get("robustness", {})}
    for c in _MEASURED:
        if c.key in measured:
            table.add_row(c.meaning, fmt(measured[c.key], c.spec))
    if run_dir:
        table.add_row("run", run_dir)
    return table


RUNS_COLUMNS = (("name", "left"), ("preset", "left"), ("dataset", "left"), ("epochs", "right"),
                ("state", "left"), ("test acc", "right"), ("R", "right"), ("‖r‖/‖x‖", "right"))
# What goes first when the table is wider than the screen: the name (what
# --name and --resume take) stays whole, so the extras make room for it.
RUNS_LEFT_OUT = (("R", "‖r‖/‖x‖"), ("dataset",), ("preset",))


def runs_table(runs: list[dict[str, Any]], console: Console | None = None) -> tuple[Table, list[str]]:
    """The runs, one a row, and the columns left out so that whole names fit
    on `console` (R and ‖r‖/‖x‖ first: at 80 columns default names leave no
    room for them; then dataset and preset, for a sweep's longer names)."""
    left_out: list[str] = []
    table = _runs_table(runs, left_out)
    unbounded = console.options.update_width(10_000) if console is not None else None
    for drop in RUNS_LEFT_OUT:
        if console is None or console.measure(table, options=unbounded).maximum <= console.width:
            break
        left_out += drop
        table = _runs_table(runs, left_out)
    return table, left_out


def _runs_table(runs: list[dict[str, Any]], left_out: list[str]) -> Table:
    table = Table(title=None, box=None, pad_edge=False)  # no rules: 80 columns hold a default name
    shown = [(col, justify) for col, justify in RUNS_COLUMNS if col not in left_out]
    for col, justify in shown:
        # The name is what --name and --resume take: whole, folded only if wider than the screen.
        table.add_column(col, justify=justify, no_wrap=True, overflow="fold" if col == "name" else "ellipsis")
    for r in runs:
        cells = {"name": r["name"], "preset": r["preset"], "dataset": r["dataset"],
                 "epochs": f"{r['epochs_done']}/{r['epochs']}", "state": r.get("state", r["status"]),
                 "test acc": fmt(r["test_acc"], ".3f"), "R": fmt(r.get("separation_ratio"), ".3g"),
                 "‖r‖/‖x‖": fmt(r.get("robustness_mean"), ".3g")}
        table.add_row(*(cells[col] for col, _ in shown))
    return table


def final_event_status(event: Event | None) -> str:
    if isinstance(event, (RunFinished, RunFailed)):
        return event.status
    return "error"
