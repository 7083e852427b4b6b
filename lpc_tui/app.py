"""LpcApp: wires the panes, the keys and one background run together.

The training thread only posts EngineEvent messages (runner.BackgroundRun
calls `_post` on its thread); everything else happens on the event loop:
the history is updated per event, and the visible pane redraws from it on a
5 Hz tick, so a fast run cannot flood the terminal.
"""

from __future__ import annotations

import subprocess
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from textual.app import App, ComposeResult
from textual.binding import Binding
from textual.widgets import ContentSwitcher, Footer, Static, TabbedContent

from lpc_engine.errors import UsageError
from lpc_engine.events import Alert, Event, RunFailed, RunFinished
from lpc_engine.training.runner import BackgroundRun, threads_beside_ui
from lpc_engine.training.train import resume_config, train

from lpc_engine.runs.reader import RunReader
from lpc_tui.export import export_folder, write_epochs_csv
from lpc_tui.follow import Follower
from lpc_tui.form import FormModel
from lpc_tui.history import RunHistory, history_from_disk
from lpc_tui.run_dirs import new_run_dir
from lpc_tui.messages import EngineEvent
from lpc_tui.screens.configure import ConfigurePane
from lpc_tui.screens.dialogs import ConfirmQuit, HelpScreen
from lpc_tui.screens.monitor import MonitorPane
from lpc_tui.screens.results import ResultsPane
from lpc_tui.screens.runs import RunsPane
from lpc_tui.status import event_line, sentence, status_line
from lpc_tui.watching import Watching
from lpc_tui.widgets.histograms import NodeHistograms

REDRAW_SECONDS = 0.2  # the tick: 5 redraws a second at most (DESIGN.md: about 10); 10 cost 10% of a digits run


class LpcApp(Watching, App):
    CSS_PATH = "app.tcss"
    TITLE = "LPC Studio"
    ENABLE_COMMAND_PALETTE = False  # its footer slot is needed at 80 columns
    BINDINGS = [
        Binding("s", "start", "start"), Binding("S", "start_detached", show=False),
        Binding("p", "pause", "pause"), Binding("x", "stop", "stop"),
        Binding("c", "pane('configure')", "conf"), Binding("m", "pane('monitor')", "monitor"),
        Binding("t", "pane('results')", "tables"), Binding("r", "pane('runs')", "runs"),
        Binding("e", "export", "export"), Binding("q", "quit", "quit"),
        Binding("question_mark", "help", "help"),
        Binding("escape", "leave_field", show=False),
        Binding("1", "tab('curves')", show=False), Binding("2", "tab('nodes')", show=False),
        Binding("3", "tab('metrics')", show=False), Binding("4", "tab('log')", show=False),
        Binding("comma", "latents(-1)", show=False), Binding("full_stop", "latents(1)", show=False),
        Binding("left_square_bracket", "page_nodes(-1)", show=False),
        Binding("right_square_bracket", "page_nodes(1)", show=False),
    ]

    def __init__(self, runs_dir: str | Path = "runs", file_values: dict[str, Any] | None = None,
                 flags: dict[str, Any] | None = None, train_fn: Callable[..., Any] = train):
        super().__init__()
        self.runs_dir = Path(runs_dir)
        self.form = FormModel(file_values, dict(flags or {}))
        self.train_fn = train_fn
        self.job: BackgroundRun | None = None
        self.history = RunHistory()
        self.followed: Follower | None = None  # a run another process writes, shown in the monitor
        self.detached: dict[Path, subprocess.Popen] = {}  # runs started here as processes of their own
        self.quitting = False
        self.status_text = ""

    def compose(self) -> ComposeResult:
        # Kept as attributes: queries would search a modal screen when one is open.
        self.configure = ConfigurePane(self.form, id="configure")
        self.monitor = MonitorPane(id="monitor")
        self.results = ResultsPane(id="results")
        self.runs = RunsPane(self.runs_dir, id="runs")
        self.switcher = ContentSwitcher(initial="configure", id="panes")
        self.status_bar = Static(id="status")
        with self.switcher:
            yield from (self.configure, self.monitor, self.results, self.runs)
        yield self.status_bar
        yield Footer(compact=True)

    def on_mount(self) -> None:
        self.set_interval(REDRAW_SECONDS, self.redraw)
        self.start_polling()
        self.redraw()

    # the run ----------------------------------------------------------------
    @property
    def active(self) -> bool:
        return self.job is not None and self.job.running

    def action_start(self) -> None:
        run_dir = self.configured_run_dir()
        if run_dir is not None:
            self._launch(BackgroundRun(self.configure.cfg, self._post, run_dir=run_dir, train_fn=self.train_fn,
                                       cpu_threads=threads_beside_ui()), RunHistory(name=run_dir.name))

    def configured_run_dir(self) -> Path | None:
        """The new folder of the configured run, or None with the reason shown."""
        if self.active:
            self.notify("a run is already active (x stops it)", severity="warning")
            return None
        pane = self.configure
        if pane.cfg is None:
            self.notify("fix the fields marked in red first", severity="error")
            self.action_pane("configure")
            return None
        try:
            return new_run_dir(self.runs_dir, pane.run_name, pane.cfg)
        except UsageError as exc:
            self.notify(str(exc), severity="error")
            return None

    def on_runs_pane_resume_requested(self, message: RunsPane.ResumeRequested) -> None:
        if self.active:
            self.notify("a run is already active (x stops it)", severity="warning")
            return
        try:
            cfg = resume_config(message.run_dir)
        except UsageError as exc:
            self.notify(str(exc), severity="error")
            return
        if (RunReader(message.run_dir).summary() or {}).get("status") == "finished":
            self.notify(f"{message.run_dir.name} is finished: nothing to resume (lpc run --resume "
                        "--epochs N trains it on)", severity="warning")
            return
        self._launch(BackgroundRun(cfg, self._post, run_dir=message.run_dir, resume=True,
                                   train_fn=self.train_fn, cpu_threads=threads_beside_ui()),
                     history_from_disk(message.run_dir))

    def _launch(self, run: BackgroundRun, history: RunHistory) -> None:
        self.job, self.history, self.followed = run, history, None
        history.status = "starting"
        self.monitor.log_line(f"[b]starting[/b] {history.name}")
        self.action_pane("monitor")
        run.start()

    def _post(self, event: Event) -> None:
        """Called on the training thread: hand the event over, nothing else."""
        self.post_message(EngineEvent(event))

    def on_engine_event(self, message: EngineEvent) -> None:
        event = message.event
        self.history.apply(event)
        line = event_line(event)
        if line:
            self.monitor.log_line(line)
        if isinstance(event, Alert):
            self.notify(event.message, title=event.code.replace("_", " "), timeout=10,
                        severity="error" if event.level == "error" else "warning")
        if isinstance(event, (RunFinished, RunFailed)):
            self._ended(event)

    def _ended(self, event: RunFinished | RunFailed) -> None:
        self.results.show(self.history)
        self.runs.action_reload()
        if isinstance(event, RunFailed):
            self.notify(sentence(event.error) or event.status, title=f"run {event.status}", severity="error",
                        timeout=15)
        elif event.status == "finished":
            self.action_pane("results")
        if self.quitting:
            self.exit()

    def _own_run(self, what: str) -> bool:
        """True if p or x is for this app's own run; else a followed run was
        asked through its folder, or there is none to ask (said so)."""
        if self.ask_followed(what):
            return False
        if not self.active:
            self.notify("no active run", severity="warning")
        return self.active

    def action_pause(self) -> None:
        if self._own_run("pause") and self.job.paused:
            self.job.resume()
        elif self.active:
            self.job.pause()
        self.redraw()

    def action_stop(self) -> None:
        if self._own_run("stop"):
            self.job.stop()
            self.notify("stopping: a checkpoint is saved first")

    # views ------------------------------------------------------------------
    def redraw(self, force: bool = False) -> None:
        """The 5 Hz tick: the status line, and the monitor when it is shown."""
        paused = self.active and self.job.paused
        text = status_line(self.history, paused)
        if text != self.status_text:  # a fixed-size line: no layout pass needed
            self.status_text = text
            self.status_bar.update(text, layout=False)
        if self.switcher.current == "monitor":
            self.monitor.draw(self.history, force)

    def action_pane(self, name: str) -> None:
        self.switcher.current = name
        if name == "monitor":
            self.monitor.draw(self.history, force=True)
        if name == "results" and self.history.status not in ("idle", "starting", "running"):
            self.results.show(self.history)
        focus = {"runs": "#runs-table", "monitor": "#monitor-tabs Tabs", "results": "#results"}.get(name)
        self.set_focus(self.switcher.query_one(focus) if focus else None)

    def action_tab(self, name: str) -> None:
        if self.switcher.current == "monitor":
            self.monitor.query_one(TabbedContent).active = f"tab-{name}"

    def action_page_nodes(self, step: int) -> None:
        """[ and ]: the next page of node histograms, wherever the focus is in the monitor."""
        if self.switcher.current == "monitor":
            self.monitor.query_one("#nodes", NodeHistograms).action_page(step)

    def action_leave_field(self) -> None:
        """Esc in a form field: give the letter keys back to the app (in the
        runs pane's filter, to its table)."""
        self.set_focus(self.runs.query_one("#runs-table") if self.switcher.current == "runs" else None)

    def action_help(self) -> None:
        self.push_screen(HelpScreen())

    def action_export(self) -> None:
        h = self._export_target()
        if h is None or not h.rows:
            self.notify("nothing to export yet: start a run or open one in the runs pane", severity="warning")
            return
        folder = export_folder(h, self.runs_dir)
        try:
            csv_path = write_epochs_csv(h, folder)
            svg = self.save_screenshot(path=str(folder), filename=f"screen-{time.strftime('%Y%m%d-%H%M%S')}.svg")
        except OSError as exc:
            self.notify(f"export failed: {exc.strerror}", severity="error")
            return
        self.notify(f"wrote {csv_path} and {svg}", title="exported")

    def _export_target(self) -> RunHistory | None:
        if self.switcher.current == "runs":
            return self.runs.history(self.runs.opened) if self.runs.opened else None
        return self.history if self.history.rows else None

    async def action_quit(self) -> None:
        if not self.active:
            self.exit(message=self._detached_note() or None)
            return

        def answered(yes: bool | None) -> None:
            if yes:
                self.quitting = True
                self.job.stop()
                self.notify("stopping the run: saving a checkpoint, then quitting")
        self.push_screen(ConfirmQuit(), answered)
