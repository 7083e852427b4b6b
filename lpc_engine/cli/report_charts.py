"""`lpc report`'s plotext charts for a terminal: Fig. 3's scatter and
Figs. 4-5's curves, without colour codes (they go into files and pipes)."""

from __future__ import annotations

import re
from typing import Any

import plotext

_ANSI = re.compile(r"\x1b\[[0-9;]*m")


def _plain(chart: str) -> str:
    """Charts go into markdown files and pipes: no colour codes."""
    return _ANSI.sub("", chart)


def scatter_chart(corr: dict[str, Any], width: int = 78, height: int = 18) -> str:
    """Fig. 3: robustness against R (log axis), one point per run."""
    points = [p for p in corr["points"] if p["separation_ratio"] > 0]
    if not points:
        return "(no run has both R and robustness)\n"
    plotext.clear_figure()
    plotext.plotsize(width, height)
    plotext.theme("clear")
    plotext.scatter([p["separation_ratio"] for p in points], [p["robustness_mean"] for p in points])
    plotext.xscale("log")
    plotext.title("Fig. 3: robustness against R, one point per run")
    plotext.xlabel("R (log)")
    return _plain(plotext.build()) + "\n"


def curve_charts(curves: dict[str, dict[str, list]], width: int = 78, height: int = 14) -> str:
    """Figs. 4, 5: each curve metric over epochs, one line per architecture."""
    charts = []
    for key in ("nc1", "gmm_score_mean", "gmm_std_mean", "gmm_peak_distance_mean"):
        plotext.clear_figure()
        plotext.plotsize(width, height)
        plotext.theme("clear")
        drawn = 0
        for label, series in curves.items():
            # log axes but for the score, which may be negative
            pts = [(e, v) for e, v in zip(series["epoch"], series[key])
                   if v is not None and (v > 0 or key == "gmm_score_mean")]
            if pts:
                plotext.plot([p[0] for p in pts], [p[1] for p in pts], label=label[:14])
                drawn += 1
        if not drawn:
            continue
        if key != "gmm_score_mean":
            plotext.yscale("log")
        plotext.title(f"{key} over epochs" + ("" if key == "gmm_score_mean" else " (log)"))
        charts.append(_plain(plotext.build()))
    return "\n".join(charts) + "\n" if charts else "(no metrics rows over epochs)\n"
