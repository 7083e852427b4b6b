"""Runs pane: every run in the runs directory, at any depth, with its state,
refreshed every few seconds off the event loop; a folder of runs (a sweep)
is one row that Enter opens and closes (run_groups.py). Open a run to see
its curves here and follow it in the monitor (Enter), mark several (space;
on a folder, all its runs) to overlay their curves and compare their
numbers, resume a stopped one (R)."""

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
from lpc_tui.run_groups import Row, group_key, short_names, table_rows
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
        self.open_groups: set[str] = set()  # folders shown open; all start closed
        self.rows: dict[str, Row] = {}  # the table's rows by key
        self.seen: dict[str, tuple[int, str]] = {}  # (epochs done, status) of each listed run

    def compose(self) -> ComposeResult:
        with Horizontal(id="runs-bar"):
            yield Static("Enter monitor/open · Space mark · v compare · R resume · / filter", id="runs-hint")
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
        self.draw()

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
        self._forget_deleted({r["name"] for r in runs})
        table = self.query_one(DataTable)
        cursor = self._cursor_key()
        self.rows = {row.key: row for row in table_rows(runs, self.open_groups, self.marked, self.filter_text)}
        if list(self.rows) != [str(k.value) for k in table.rows]:
            table.clear()
            for key, row in self.rows.items():
                table.add_row(*row.cells, key=key)
            if cursor is not None:  # the cursor stays on its row, or else on that run's folder
                keep = cursor if cursor in self.rows else group_key(cursor.rpartition("/")[0])
                if keep in self.rows:
                    table.move_cursor(row=list(self.rows).index(keep))
        else:
            for key, row in self.rows.items():
                for column, cell in zip(COLUMNS, row.cells):
                    if table.get_cell(key, column or "mark") != cell:
                        table.update_cell(key, column or "mark", cell, update_width=True)
        self._reload_changed(runs)
        if self.rows and self.opened is None:
            self.action_open()

    def _reload_changed(self, runs: list[dict]) -> None:
        """A run that moved on since its curves were read (it trained, or
        ended) is read again, and redrawn if it is shown."""
        changed = [r["name"] for r in runs if r["name"] in self.loaded
                   and (r["epochs_done"], r["status"]) != self.seen.get(r["name"])]
        self.seen = {r["name"]: (r["epochs_done"], r["status"]) for r in runs}
        for name in changed:
            del self.loaded[name]
        if set(changed) & set(self.shown_names()):
            self.draw()

    def _forget_deleted(self, names: set[str]) -> None:
        """Runs gone from the store (deleted, moved) are no longer marked or shown."""
        kept = [n for n in self.marked if n in names]
        gone = self.opened is not None and self.opened not in names
        if gone:
            self.opened = None
        if gone or kept != self.marked:
            self.marked = kept
            self.draw()

    def _cursor_key(self) -> str | None:
        table = self.query_one(DataTable)
        if not table.row_count:
            return None
        return str(table.coordinate_to_cell_key(table.cursor_coordinate).row_key.value)

    def _cursor_row(self) -> Row | None:
        key = self._cursor_key()
        return None if key is None else self.rows.get(key)

    def _cursor_run(self) -> str | None:
        """The run under the cursor; None on a folder's row."""
        row = self._cursor_row()
        return None if row is None or row.is_group else row.key

    def history(self, name: str) -> RunHistory:
        if name not in self.loaded:
            self.loaded[name] = history_from_disk(self.runs_dir / name)
        return self.loaded[name]

    def on_data_table_row_selected(self, event: DataTable.RowSelected) -> None:
        row = self._cursor_row()
        if row is not None and row.is_group:
            if not self.filter_text:  # a filter holds every folder with a match open
                self.open_groups ^= {row.key[:-1]}
                self._show(self.listed)
            return
        self.action_open()
        if self.opened is not None:
            self.post_message(self.FollowRequested(self.runs_dir / self.opened))

    def action_open(self) -> None:
        """The run under the cursor; on a folder's row (or none yet), its first run."""
        row = self._cursor_row()
        if row is not None and not row.is_group:
            self.opened = row.key
        elif row is not None and self.opened is None:
            self.opened = row.runs[0]
        self.draw()

    def action_mark(self) -> None:
        """Space: mark the run under the cursor, or every run of a folder (or
        unmark them, when all are marked)."""
        row = self._cursor_row()
        if row is None:
            return
        if all(n in self.marked for n in row.runs):
            self.marked = [n for n in self.marked if n not in row.runs]
        else:
            self.marked += [n for n in row.runs if n not in self.marked]
        self._show(self.listed)
        self.draw()

    def action_compare(self) -> None:
        names = self.shown_names()
        if not names:
            self.app.notify("mark runs with Space first", severity="warning")
            return
        self.app.push_screen(CompareScreen([self.runs_dir / n for n in names]))

    def action_resume(self) -> None:
        name = self._cursor_run()
        if name is not None:
            self.post_message(self.ResumeRequested(self.runs_dir / name))
        elif self._cursor_row() is not None:
            self.app.notify("R resumes one run: open the folder (Enter) and pick one", severity="warning")

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
    for (_, h), name in zip(histories, short_names([n for n, _ in histories])):
        m, rob = h.summary.get("metrics") or h.metrics, h.summary.get("robustness") or h.robustness
        table.add_row(name, fmt(h.summary.get("test_acc")), fmt(m.get("separation_ratio")),
                      fmt(m.get("sigma_w_trace_ratio")), fmt(m.get("gmm_peak_distance_mean")),
                      fmt(rob.get("robustness_mean")), h.status)
    return table
