"""Results pane: when a run ends, its robustness table and its Table I / II /
IV rows beside the paper's CIFAR-10 LPC and NoPen rows, for scale."""

from __future__ import annotations

from rich.console import Group
from rich.text import Text
from textual.app import ComposeResult
from textual.containers import VerticalScroll
from textual.widgets import Static

from lpc_tui.history import RunHistory
from lpc_tui.widgets.tables import paper_comparison, robustness_table, run_values


class ResultsPane(VerticalScroll):
    def compose(self) -> ComposeResult:
        yield Static(Text("results appear here when a run ends (or open one in the runs pane, r)",
                          style="dim"), id="results-body")

    def show(self, h: RunHistory) -> None:
        head = Text(f"{h.name or 'run'} · {h.status} · epoch {h.epoch}/{h.epochs}", style="bold")
        if h.error:
            head.append(f"\n{h.error}", style="red")
        values = run_values(h.summary, h.metrics, h.robustness)
        parts = [head, paper_comparison(values)]
        if h.robustness:
            parts.insert(1, robustness_table(h.robustness))
        self.query_one("#results-body", Static).update(Group(*parts))
