"""Line charts of epoch series (textual-plotext), drawn only when shown.

Data goes in as attributes (`show`); the plot is built in `render`, which
Textual calls only for a visible widget that was refreshed, so hidden charts
cost nothing and the monitor's throttle bounds the redraw rate.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass
from collections.abc import Sequence

from textual.app import RenderResult
from textual_plotext import PlotextPlot

from lpc_tui.downsample import downsample


@dataclass(frozen=True)
class Series:
    label: str
    xs: Sequence[float]
    ys: Sequence[float]
    color: str = "cyan"
    marker: str = "braille"
    yside: str = "left"  # "right" puts a second scale on the right


class SeriesPlot(PlotextPlot):
    """One titled chart of a few series over epochs."""

    def __init__(self, title: str, log_y: bool = False, y_range: tuple[float, float] | None = None,
                 **kwargs):
        super().__init__(**kwargs)
        self.title, self.log_y, self.y_range = title, log_y, y_range
        self.series: list[Series] = []
        self.x_max: float | None = None
        self.render_seconds = 0.0  # the last build's cost: the monitor paces redraws by it

    def show(self, series: list[Series], x_max: float | None = None) -> None:
        self.series, self.x_max = series, x_max
        self.refresh()

    def render(self) -> RenderResult:
        began = time.perf_counter()
        result = self._build()
        self.render_seconds = time.perf_counter() - began
        return result

    def _build(self) -> RenderResult:
        plt = self.plt
        plt.clear_figure()
        plt.title(self.title)
        drawn = 0
        for s in self.series:
            xs, ys = _drawable(s.xs, s.ys, self.log_y and s.yside == "left")
            if not xs:
                continue
            xs, ys = downsample(xs, ys, max(16, 2 * self.size.width))
            plt.plot(xs, ys, label=s.label, color=s.color, marker=s.marker, yside=s.yside)
            drawn += 1
        if self.log_y and drawn:
            # Left axis only: a log right axis over a constant LR gets absurd
            # ticks, and plotext's right-axis ylim breaks its legend.
            plt.yscale("log", yside="left")
        if self.y_range is not None:
            plt.ylim(*self.y_range)
        if self.x_max and drawn:
            plt.xlim(1, max(self.x_max, 2))  # a one-epoch run: plotext divides by the x span
        if not drawn:
            plt.text("waiting for data", 0.5, 0.5, alignment="center")
            plt.xlim(0, 1)
            plt.ylim(0, 1)
        return super().render()


def _drawable(xs: Sequence[float], ys: Sequence[float], log_y: bool) -> tuple[list, list]:
    """Points that can be drawn: finite, and positive on a log axis."""
    keep = [(x, y) for x, y in zip(xs, ys) if math.isfinite(y) and (y > 0 or not log_y)]
    return [p[0] for p in keep], [p[1] for p in keep]

