"""The app's side of watching runs it does not train itself: following a
run from its folder (follow.py), starting one as a detached process
(detached.py), stepping the nodes pane through a run's measured epochs, and
asking a followed run to pause or stop through its folder. A mixin of
LpcApp, kept out of app.py, which wires the panes together."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path

from lpc_engine.errors import UsageError
from lpc_engine.runs.control import request
from lpc_engine.runs.reader import RunReader

from lpc_tui.detached import start_detached
from lpc_tui.follow import POLL_SECONDS, Follower, Update
from lpc_tui.screens.runs import RunsPane
from lpc_tui.status import event_line


class Watching:
    """Expects LpcApp's attributes: history, followed, detached, monitor,
    switcher, runs_dir, active, configured_run_dir, action_pane."""

    detached: dict[Path, subprocess.Popen]

    def start_polling(self) -> None:
        self.set_interval(POLL_SECONDS, self._poll_followed)

    def on_runs_pane_follow_requested(self, message: RunsPane.FollowRequested) -> None:
        if self.active:
            self.notify("a run is active here: the monitor shows it (x stops it)", severity="warning")
            return
        follower = Follower(message.run_dir)
        try:
            history = follower.start()
        except UsageError as exc:
            self.notify(str(exc), severity="error")
            return
        self.followed, self.history = follower, history
        self.monitor.log_line(f"[b]following[/b] {message.run_dir} ({history.status})")
        self.action_pane("monitor")

    def _poll_followed(self) -> None:
        if self.followed is not None and not self.active:
            self.run_worker(self._look, thread=True, exclusive=True, group="follow")

    def _look(self) -> None:
        """On a worker thread: read the folder, hand what was found to the loop."""
        follower = self.followed
        if follower is not None:
            update = follower.look()
            self.call_from_thread(self._followed_update, follower, update)

    def _followed_update(self, follower: Follower, update: Update) -> None:
        if follower is not self.followed:
            return  # another run was opened meanwhile
        Follower.apply(self.history, update)
        for event in update.events:
            line = event_line(event)
            if line:
                self.monitor.log_line(line)

    def action_start_detached(self) -> None:
        """S: the configured run as a detached `lpc run` process, which outlives
        this TUI; the monitor follows it from its folder."""
        run_dir = self.configured_run_dir()
        if run_dir is None:
            return
        process = start_detached(self.configure.cfg, run_dir)
        self.detached[run_dir] = process
        self.notify(f"started {run_dir.name} as process {process.pid}: it keeps training if this TUI "
                    "closes", title="detached run")
        self.run_worker(lambda: self._follow_when_made(run_dir, process), thread=True, group="detached")

    def _follow_when_made(self, run_dir: Path, process) -> None:
        """On a worker thread: wait until the process has made its run folder, then follow it."""
        while not (run_dir / "config.json").is_file():
            if process.poll() is not None:
                self.call_from_thread(self.notify, f"{run_dir.name} ended before it started (see "
                                      f"{run_dir.parent / '.detached' / (run_dir.name + '.log')})",
                                      severity="error")
                return
            time.sleep(0.1)
        self.call_from_thread(self.on_runs_pane_follow_requested, RunsPane.FollowRequested(run_dir))

    def action_latents(self, step: int) -> None:
        """, and . in the monitor: the node histograms and codebook of the
        previous or next measured epoch, from the run's latents on disk (Fig. 4 over time)."""
        h = self.history
        if self.switcher.current != "monitor" or not h.run_dir:
            return
        reader = RunReader(h.run_dir)
        epochs = reader.latent_epochs()
        if not epochs:
            self.notify("no latent samples on disk for this run yet", severity="warning")
            return
        now = h.latents.epoch if h.latents is not None else epochs[-1]
        later = [e for e in epochs if (e > now if step > 0 else e < now)]
        if not later:
            self.notify(f"epoch {now} is the {'last' if step > 0 else 'first'} measured one")
            return
        h.latents = reader.latent_sample(later[0] if step > 0 else later[-1])
        h.version += 1
        self.monitor.draw(h, force=True)

    def _detached_note(self) -> str:
        """What quitting leaves behind: the detached runs still training."""
        alive = [f"{d.name} (pid {p.pid})" for d, p in self.detached.items() if p.poll() is None]
        return ("still training, detached: " + ", ".join(alive) + f"; follow them with lpc-tui "
                f"--runs-dir {self.runs_dir}, stop them with lpc stop RUN_DIR") if alive else ""

    def _followed_running(self) -> bool:
        return self.followed is not None and self.history.status in ("running", "paused")

    def ask_followed(self, what: str) -> bool:
        """p and x on a followed run: the request goes through its folder; False
        if no followed run is running."""
        if self.active or not self._followed_running():
            return False
        if what == "pause":  # the folder says whether it is paused (reader.run_state)
            what = "resume" if self.history.status == "paused" else "pause"
        request(self.followed.dir, what)
        self.notify(f"asked {self.followed.dir.name} to {what}"
                    + (": it saves a checkpoint first" if what == "stop" else ""))
        return True
