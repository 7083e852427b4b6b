"""Runs pane: every run in the runs directory, at any depth (a sweep's runs
together), with its state, refreshed every few seconds off the event loop;
open one to see its curves here and follow it in the monitor (Enter), mark
several (space) to overlay their curves and compare their numbers, resume a
stopped one (R)."""

from __future__ import annotations

from pathlib import Path

from rich.table import Table
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Grid, Horizontal, Vertical
from textual.message import Message
from textual.widgets import DataTable, Input, Static

from lpc_engine.runs.reader import list_runs

from lpc_tui.history import RunHistory, history_from_disk
from lpc_tui.screens.compare import CompareScreen
from lpc_tui.widgets.plots import Series, SeriesPlot
from lpc_tui.widgets.tables import fmt

COLORS = ("cyan", "magenta", "green", "yellow", "blue", "red", "white")
REFRESH_SECONDS = 2.0
COLUMNS = ("", "name", "state", "epochs", "test acc", "R", "robust.", "preset", "dataset")


class RunsPane(Vertical):
    # Listed in the hint line above the table, so the footer keeps the global keys.
    BINDINGS = [Binding("space", "mark", "mark", show=False), Binding("enter", "open", "open", show=False),
                Binding("R", "resume", "resume", show=False), Binding("g", "reload", "reload", show=False),
                Binding("v", "compare", "compare", show=False),
                Binding("slash", "filter", "filter", show=False)]

    class ResumeRequested(Message):
        def __init__(self, run_dir: Path) -> None:
            super().__init__()
            self.run_dir = run_dir

    class FollowRequested(Message):
        """Enter on a run: show it in the monitor, following it as it grows."""

        def __init__(self, run_dir: Path) -> None:
            super().__init__()
            self.run_dir = run_dir

    def __init__(self, runs_dir: str | Path, **kwargs):
        super().__init__(**kwargs)
        self.runs_dir = Path(runs_dir)
        self.marked: list[str] = []
        self.loaded: dict[str, RunHistory] = {}
        self.opened: str | None = None
        self.listed: list[dict] = []  # the last listing, before the filter
        self.filter_text = ""

    def compose(self) -> ComposeResult:
        with Horizontal(id="runs-bar"):
            yield Static("Enter monitor · Space mark · v compare · R resume · / filter", id="runs-hint")
            yield Input(placeholder="name filter", compact=True, id="runs-filter")
        yield DataTable(id="runs-table", cursor_type="row", zebra_stripes=True)
        with Grid(id="runs-curves"):
            yield SeriesPlot("test accuracy", y_range=(0.0, 1.0), id="runs-acc")
            yield SeriesPlot("latent norm (log)", log_y=True, id="runs-norm")
        yield Static(id="runs-compare")

    def on_mount(self) -> None:
        table = self.query_one(DataTable)
        for column in COLUMNS:
            table.add_column(column, key=column or "mark")
        self.action_reload()
        self.set_interval(REFRESH_SECONDS, self._refresh)

    def action_reload(self) -> None:
        self.loaded.clear()
        self._show(list_runs(self.runs_dir))

    def action_filter(self) -> None:
        """/: type part of a run's name (or its sweep's) to list only those; Esc leaves."""
        self.query_one("#runs-filter", Input).focus()

    def on_input_changed(self, event: Input.Changed) -> None:
        if event.input.id == "runs-filter":
            self.filter_text = event.value.strip()
            self._show(self.listed)

    def _refresh(self) -> None:
        """Every few seconds, the store listed again on a worker thread (the
        event loop never waits on the disk), the table updated in place."""
        self.run_worker(self._list, thread=True, exclusive=True, group="runs-refresh")

    def _list(self) -> None:
        runs = list_runs(self.runs_dir)
        self.app.call_from_thread(self._show, runs)

    def _show(self, runs: list[dict]) -> None:
        self.listed = runs
        table = self.query_one(DataTable)
        shown = [r for r in runs if self.filter_text.lower() in r["name"].lower()]
        order = sorted(shown, key=lambda r: (r["group"], -r["mtime"]))  # a sweep's runs together
        rows = {r["name"]: self._cells(r) for r in order}
        if list(rows) != [str(k.value) for k in table.rows]:
            cursor = self._cursor_name()
            table.clear()
            for name, cells in rows.items():
                table.add_row(*cells, key=name)
            if cursor in rows:
                table.move_cursor(row=list(rows).index(cursor))
        else:
            for name, cells in rows.items():
                for column, cell in zip(COLUMNS, cells):
                    if table.get_cell(name, column or "mark") != cell:
                        table.update_cell(name, column or "mark", cell)
        if table.row_count and self.opened is None:
            self.action_open()

    def _cells(self, run: dict) -> tuple[str, ...]:
        return ("●" if run["name"] in self.marked else " ", run["name"], run["state"],
                f"{run['epochs_done']}/{run['epochs']}", fmt(run["test_acc"]), fmt(run["separation_ratio"]),
                fmt(run["robustness_mean"]), run["preset"], run["dataset"])

    def _cursor_name(self) -> str | None:
        table = self.query_one(DataTable)
        if not table.row_count:
            return None
        return str(table.coordinate_to_cell_key(table.cursor_coordinate).row_key.value)

    def history(self, name: str) -> RunHistory:
        if name not in self.loaded:
            self.loaded[name] = history_from_disk(self.runs_dir / name)
        return self.loaded[name]

    def on_data_table_row_selected(self, event: DataTable.RowSelected) -> None:
        self.action_open()
        if self.opened is not None:
            self.post_message(self.FollowRequested(self.runs_dir / self.opened))

    def action_open(self) -> None:
        self.opened = self._cursor_name()
        self.draw()

    def action_mark(self) -> None:
        name = self._cursor_name()
        if name is None:
            return
        if name in self.marked:
            self.marked.remove(name)
        else:
            self.marked.append(name)
        table = self.query_one(DataTable)
        table.update_cell(name, "mark", "●" if name in self.marked else " ")
        self.draw()

    def action_compare(self) -> None:
        names = self.shown_names()
        if not names:
            self.app.notify("mark runs with Space first", severity="warning")
            return
        self.app.push_screen(CompareScreen([self.runs_dir / n for n in names]))

    def action_resume(self) -> None:
        name = self._cursor_name()
        if name is not None:
            self.post_message(self.ResumeRequested(self.runs_dir / name))

    def shown_names(self) -> list[str]:
        """The marked runs (overlay), or else the opened one."""
        return list(self.marked) or ([self.opened] if self.opened else [])

    def draw(self) -> None:
        names = self.shown_names()
        histories = [(n, self.history(n)) for n in names]
        x_max = max((h.epochs for _, h in histories), default=0) or None
        for plot_id, key in (("runs-acc", "test_acc"), ("runs-norm", "latent_norm_mean")):
            series = [Series(Path(n).name[:16], *h.series(key), color=COLORS[i % len(COLORS)])
                      for i, (n, h) in enumerate(histories)]
            self.query_one(f"#{plot_id}", SeriesPlot).show(series, x_max)
        self.query_one("#runs-compare", Static).update(compare_table(histories))


def compare_table(histories: list[tuple[str, RunHistory]]) -> Table:
    """The shown runs' final numbers side by side."""
    table = Table(title="compare (space marks runs)", title_justify="left", padding=(0, 1))
    for header in ("run", "acc", "R", "trΣW/trΣT", "peak d.", "robust.", "status"):
        table.add_column(header, justify="left" if header in ("run", "status") else "right")
    for name, h in histories:
        m, rob = h.summary.get("metrics") or h.metrics, h.summary.get("robustness") or h.robustness
        table.add_row(name, fmt(h.summary.get("test_acc")), fmt(m.get("separation_ratio")),
                      fmt(m.get("sigma_w_trace_ratio")), fmt(m.get("gmm_peak_distance_mean")),
                      fmt(rob.get("robustness_mean")), h.status)
    return table
