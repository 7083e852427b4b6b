"""The runs pane's Compare view: `lpc report` for the marked runs, Tables I,
II and IV (mean ± std over seeds per architecture) and the R-robustness
correlation (Fig. 3), in a scrollable modal."""

from __future__ import annotations

from pathlib import Path

from rich.console import Group, RenderableType
from rich.table import Table
from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Static

from lpc_engine.study.report import TABLE_COLUMNS, collect_dirs, correlation, pooling_warnings, row_label, table_rows
from lpc_engine.metrics.columns import TABLE_TITLES
from lpc_engine.study.report_render import cell


def compare_report(run_dirs: list[Path]) -> RenderableType:
    """The report of `run_dirs` as rich tables, as `lpc report` prints it."""
    results, skipped = collect_dirs(run_dirs)
    if not results:
        return Text("no finished run among the marked ones", style="dim")
    rows = table_rows(results)
    parts: list[RenderableType] = []
    for table_name, columns in TABLE_COLUMNS.items():
        table = Table(title=TABLE_TITLES[table_name], title_justify="left", padding=(0, 1))
        for header in ("architecture", "lr", "n", *(c.heading for c in columns)):
            table.add_column(header, justify="left" if header == "architecture" else "right")
        for r in rows:
            table.add_row(row_label(r, rows), f"{r.lr:g}", str(len(r.runs)), *(cell(r, c.key) for c in columns))
        parts.append(table)
    r = correlation(results)["pearson"]
    parts.append(Text(f"Pearson r(R, robustness) over {len(results)} runs: "
                      + (f"{r:.3f}" if r is not None else "- (needs 3 runs)")))
    if skipped:
        parts.append(Text("not finished, left out: " + ", ".join(skipped), style="yellow"))
    parts += [Text(line, style="yellow") for line in pooling_warnings(rows)]
    return Group(*parts)


class CompareScreen(ModalScreen[None]):
    BINDINGS = [Binding("escape,v,q", "close", "close")]

    def __init__(self, run_dirs: list[Path]) -> None:
        super().__init__()
        self.run_dirs = run_dirs

    def compose(self) -> ComposeResult:
        with VerticalScroll(id="compare-view"):
            yield Static(compare_report(self.run_dirs))

    def action_close(self) -> None:
        self.dismiss(None)
