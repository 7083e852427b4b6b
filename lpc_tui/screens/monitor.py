"""Monitor pane: live curves, per-node histograms, collapse metrics with the
class codebook, and the event log. The app pushes a RunHistory down with
`draw` from its tick (5 Hz); charts are paced by their cost, and only the
visible tab actually renders."""

from __future__ import annotations

import time

from textual.app import ComposeResult
from textual.containers import Grid, Horizontal, Vertical, VerticalScroll
from textual.widgets import RichLog, Static, TabbedContent, TabPane

from lpc_tui.history import RunHistory
from lpc_tui.widgets.histograms import NodeHistograms
from lpc_tui.widgets.plots import Series, SeriesPlot
from lpc_tui.widgets.tables import codebook_text, metrics_table


# Charts are pure-Python builds (plotext, ~5-15 ms each on a 2-core CPU).
# Redraws are paced so they take at most this share of one core (2.5%), and come
# no more often than every MIN_SECONDS: the training thread, which needs the
# same interpreter lock, keeps nearly all of it (bench/tui_lag.py).
CHART_DUTY = 0.025
MIN_SECONDS = 0.2


class MonitorPane(Vertical):
    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.drawn_version = -1
        self.drawn_at = 0.0

    def compose(self) -> ComposeResult:
        with TabbedContent(id="monitor-tabs"):
            with TabPane("Curves 1", id="tab-curves"), Grid(id="curves"):
                yield SeriesPlot("loss: CE and penalty (log)", log_y=True, id="plot-loss")
                yield SeriesPlot("accuracy: train, test", id="plot-acc")
                yield SeriesPlot("latent norm: mean ± std (log)", log_y=True, id="plot-norm")
                yield SeriesPlot("gamma (log, left) · lr (right)", log_y=True, id="plot-gamma")
            with TabPane("Nodes 2", id="tab-nodes"):
                yield NodeHistograms(id="nodes")
            with TabPane("Metrics 3", id="tab-metrics"), Horizontal():
                yield Static(id="metrics", classes="panel")
                with VerticalScroll(classes="panel"):
                    yield Static(id="codebook")
            with TabPane("Log 4", id="tab-log"):
                yield RichLog(id="log", wrap=True, markup=True, max_lines=2000)

    def on_mount(self) -> None:
        self.log_view = self.query_one("#log", RichLog)
        self.plots = list(self.query(SeriesPlot).results())

    def log_line(self, text: str) -> None:
        self.log_view.write(text)

    def draw(self, h: RunHistory, force: bool = False) -> None:
        """Push the history into the widgets if it changed since the last
        draw and the pacing allows; a skipped change is drawn on a later tick."""
        if h.version == self.drawn_version and not force:
            return
        cost = sum(p.render_seconds for p in self.plots if p.region.area)
        now = time.monotonic()
        if not force and now - self.drawn_at < max(MIN_SECONDS, cost / CHART_DUTY):
            return
        curves = curve_series(h)
        plots = {plot_id: self.query(f"#{plot_id}") for plot_id in curves}
        if not all(plots.values()):  # shown before its tabs were mounted (a loaded machine): next tick
            return
        self.drawn_version, self.drawn_at = h.version, now
        x_max = max(h.epochs, h.epoch) or None  # rows past the plan (a run extended elsewhere) stay in range
        for plot_id, series in curves.items():
            plots[plot_id].first(SeriesPlot).show(series, x_max)
        self.query_one("#nodes", NodeHistograms).show(h.latents)
        self.query_one("#metrics", Static).update(metrics_table(h.metrics, h.metrics_epoch))
        self.query_one("#codebook", Static).update(codebook_text(h.latents))


def curve_series(h: RunHistory) -> dict[str, list[Series]]:
    """Every chart's series, from the epoch rows."""
    epochs, norm = h.series("latent_norm_mean")
    _, cov = h.series("latent_norm_cov")
    low = [m * max(1e-12, 1 - c) for m, c in zip(norm, cov)]
    high = [m * (1 + c) for m, c in zip(norm, cov)]
    return {
        "plot-loss": [Series("CE", *h.series("ce"), color="cyan"),
                      Series("penalty", *h.series("penalty"), color="magenta")],
        "plot-acc": [Series("train", *h.series("train_acc"), color="cyan"),
                     Series("test", *h.series("test_acc"), color="green")],
        "plot-norm": [Series("±std", epochs, high, color="gray", marker="dot"),
                      Series("", epochs, low, color="gray", marker="dot"),
                      Series("mean", epochs, norm, color="yellow")],  # drawn last, on top
        "plot-gamma": [*_schedule_if_capped(h),
                       Series("gamma", *h.series("gamma"), color="magenta"),
                       Series("lr", *h.series("lr"), color="blue", yside="right")],
    }


def _schedule_if_capped(h: RunHistory) -> list[Series]:
    """The schedule's gamma under the used one, once the governor or the
    `hold` policy has held gamma below it."""
    capped = any(r.get("gamma", 0.0) < r.get("gamma_scheduled", 0.0) for r in h.rows)
    return [Series("schedule", *h.series("gamma_scheduled"), color="gray", marker="dot")] if capped else []
