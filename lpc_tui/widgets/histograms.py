"""Per-node histograms of the penultimate layer: small multiples in text.

Under LPC each node's values split into two peaks opposite about the origin
(Fig. 2, appendix D). Every cell shows one node: its histogram over a range
symmetric about 0 (so the origin is the middle), its GMM score (eq. D1
summand) and peak distance (eq. D3 summand); nodes whose peaks lie at least
BINARY_PEAK_DISTANCE widths apart are counted as binary and drawn green.
"""

from __future__ import annotations

import numpy as np
from rich.text import Text
from textual.reactive import reactive
from textual.widget import Widget

from lpc_engine.events import LatentSample
from lpc_engine.metrics.binarity import BINARY_PEAK_DISTANCE

BINS = 16
CELL_WIDTH = 19  # 18 characters and a gap: "z03 +0.41 p12.3 ●"
CELL_HEIGHT = 3  # title and two rows of bars (16 levels)
_BLOCKS = " ▁▂▃▄▅▆▇█"


def node_histogram(values: np.ndarray, bins: int = BINS) -> np.ndarray:
    """Counts of `values` in `bins` equal bins over [-a, a], a = max |value|."""
    a = float(np.abs(values).max()) if values.size else 0.0
    if a == 0.0 or not np.isfinite(a):
        counts = np.zeros(bins, dtype=np.int64)
        counts[bins // 2] = values.size  # all at the origin: the merged failure
        return counts
    return np.histogram(values, bins=bins, range=(-a, a))[0]


def bar_rows(counts: np.ndarray, rows: int = 2) -> list[str]:
    """Counts as `rows` lines of block characters, top line first."""
    peak = counts.max() if counts.size else 0
    levels = np.zeros_like(counts) if peak == 0 else np.ceil(counts / peak * 8 * rows).astype(int)
    lines = []
    for row in range(rows - 1, -1, -1):
        part = np.clip(levels - 8 * row, 0, 8)
        lines.append("".join(_BLOCKS[v] for v in part))
    return lines


def binary_nodes(sample: LatentSample) -> int:
    return sum(p >= BINARY_PEAK_DISTANCE for p in sample.node_peak_distance)


class NodeHistograms(Widget, can_focus=True):
    """A page of node cells; `[` and `]` turn pages when d is large."""

    BINDINGS = [("left_square_bracket", "page(-1)", "prev nodes"),
                ("right_square_bracket", "page(1)", "next nodes")]
    page = reactive(0)

    def __init__(self, **kwargs):
        super().__init__(**kwargs)
        self.sample: LatentSample | None = None

    def show(self, sample: LatentSample | None) -> None:
        self.sample = sample
        self.refresh()

    def per_page(self) -> int:
        cols = max(1, self.size.width // CELL_WIDTH)
        return cols * max(1, (self.size.height - 1) // CELL_HEIGHT)

    def action_page(self, step: int) -> None:
        d = self.sample.z.shape[1] if self.sample is not None else 0
        pages = max(1, -(-d // self.per_page()))
        self.page = (self.page + step) % pages

    def render(self) -> Text:
        s = self.sample
        if s is None or s.z.ndim != 2 or s.z.shape[1] == 0:
            return Text("no latent sample yet: histograms arrive with the collapse metrics", style="dim")
        d, per_page = s.z.shape[1], self.per_page()
        pages = max(1, -(-d // per_page))
        first = min(self.page, pages - 1) * per_page
        text = Text(f"{binary_nodes(s)} of {d} nodes binary (peaks ≥ {BINARY_PEAK_DISTANCE:g} widths apart)"
                    f" · epoch {s.epoch} · page {first // per_page + 1}/{pages} [ ]\n", style="bold")
        cols = max(1, self.size.width // CELL_WIDTH)
        nodes = list(range(first, min(d, first + per_page)))
        for start in range(0, len(nodes), cols):
            text.append_text(self._cell_row(s, nodes[start:start + cols]))
        return text

    def _cell_row(self, s: LatentSample, nodes: list[int]) -> Text:
        titles, bars = Text(), [Text(), Text()]
        for i in nodes:
            score = s.node_score[i] if i < len(s.node_score) else float("nan")
            peak = s.node_peak_distance[i] if i < len(s.node_peak_distance) else float("nan")
            style = "green" if peak >= BINARY_PEAK_DISTANCE else "yellow"
            titles.append(f"z{i:02d} {score:+5.2f} p{peak:4.1f}".ljust(CELL_WIDTH)[:CELL_WIDTH], style=style)
            for line, row in zip(bars, bar_rows(node_histogram(s.z[:, i]))):
                line.append(row.center(CELL_WIDTH - 1) + " ", style=style)
        return Text("\n").join([titles, *bars]) + Text("\n")
