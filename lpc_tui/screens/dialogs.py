"""Modal screens: the key help and the quit confirmation."""

from __future__ import annotations

from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import Static

HELP = """[b]LPC Studio keys[/b]

  [b]c[/b]  configure     Tab / Shift+Tab move between fields,
                   Esc leaves a field so the letter keys work
  [b]s[/b]  start the configured run ([b]S[/b]: detached, it outlives SSH)
  [b]p[/b]  pause / resume the run (or a followed one)
  [b]x[/b]  stop the run, or a followed one (a checkpoint first)
  [b]m[/b]  monitor       1-4 switch Curves / Nodes / Metrics / Log,
                   [ ] page the nodes, , . step measured epochs
  [b]t[/b]  results       robustness and Tables I, II, IV vs the paper
  [b]r[/b]  runs          Enter follows one in the monitor, or opens and
                   closes a sweep's folder; Space marks (a folder:
                   all its runs), v compares the marked runs
                   (Tables I, II, IV), R resumes the run under the
                   cursor, / filters by name, g reloads
  [b]e[/b]  export        the run's epochs as CSV and an SVG screenshot
  [b]q[/b]  quit          asks first when a run is active
  [b]?[/b]  this help     Esc closes it"""


class HelpScreen(ModalScreen[None]):
    BINDINGS = [Binding("escape,question_mark,q", "dismiss", "close")]

    def compose(self) -> ComposeResult:
        with Vertical(id="dialog"):
            yield Static(HELP)

    def action_dismiss(self, result: None = None) -> None:
        self.dismiss(None)


class ConfirmQuit(ModalScreen[bool]):
    BINDINGS = [Binding("y", "answer(True)", "yes"), Binding("n,escape", "answer(False)", "no")]

    def compose(self) -> ComposeResult:
        with Vertical(id="dialog"):
            yield Static("A run is active.\nStop it (a checkpoint is saved) and quit?\n\n"
                         "[b]y[/b] yes    [b]n[/b] no")

    def action_answer(self, yes: bool) -> None:
        self.dismiss(yes)
