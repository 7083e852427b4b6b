"""`lpc report` output: markdown, CSV and JSON of the same numbers, and
plotext charts (Fig. 3's scatter, Figs. 4-5's curves) for a terminal."""

from __future__ import annotations

import csv
import io
import re
from typing import Any

import plotext

from lpc_engine.metrics.columns import TABLE_TITLES, fmt
from lpc_engine.study.report import CURVE_KEYS, MIN_OVER_RUNS, TABLE_COLUMNS, Row, row_label

_ANSI = re.compile(r"\x1b\[[0-9;]*m")


def _plain(chart: str) -> str:
    """Charts go into markdown files and pipes: no colour codes."""
    return _ANSI.sub("", chart)


def cell(row: Row, key: str) -> str:
    """mean ± std over the row's runs (the mean alone for one run, or a minimum)."""
    if key not in row.mean:
        return "-"
    if key in MIN_OVER_RUNS or len(row.runs) == 1:
        return fmt(row.mean[key], "wide")
    return f"{fmt(row.mean[key], 'wide')} ± {fmt(row.std[key], 'wide')}"


def report_json(rows: list[Row], extra: dict[str, Any]) -> dict[str, Any]:
    """Every number the markdown shows, and the runs behind each row."""
    tables = {}
    for table, columns in TABLE_COLUMNS.items():
        tables[table] = [{"architecture": row_label(r, rows), "preset": r.preset, "lr": r.lr,
                          "n": len(r.runs), "runs": list(r.runs),
                          **{c.key: {"mean": r.mean.get(c.key), "std": r.std.get(c.key)} for c in columns}}
                         for r in rows]
    return {**extra, "tables": tables}


def report_markdown(rows: list[Row], corr: dict[str, Any], skipped: list[str]) -> str:
    lines = []
    for table, columns in TABLE_COLUMNS.items():
        lines += [f"### {TABLE_TITLES[table]}", "",
                  "| architecture | lr | n | " + " | ".join(c.heading for c in columns) + " |",
                  "|---|---|---|" + "---|" * len(columns)]
        for r in rows:
            lines.append(f"| {row_label(r, rows)} | {r.lr:g} | {len(r.runs)} | "
                         + " | ".join(cell(r, c.key) for c in columns) + " |")
        lines.append("")
    r = corr["pearson"]
    lines.append(f"Pearson correlation of R and robustness over {len(corr['points'])} runs (Fig. 3): "
                 + (f"{r:.3f}" if r is not None else "- (needs 3 runs with both and some spread)"))
    if skipped:
        lines += ["", "Not finished, left out: " + ", ".join(skipped)]
    return "\n".join(lines) + "\n"


def report_csv(rows: list[Row]) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    keys = [c.key for columns in TABLE_COLUMNS.values() for c in columns]
    writer.writerow(["architecture", "preset", "lr", "n"] + [f"{k}_{s}" for k in keys for s in ("mean", "std")])
    for r in rows:
        writer.writerow([row_label(r, rows), r.preset, r.lr, len(r.runs)]
                        + [r.mean.get(k, "") if s == "mean" else r.std.get(k, "")
                           for k in keys for s in ("mean", "std")])
    return out.getvalue()


def curves_csv(curves: dict[str, dict[str, list]]) -> str:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["architecture", "epoch", *CURVE_KEYS])
    for label, series in curves.items():
        for i, epoch in enumerate(series["epoch"]):
            writer.writerow([label, epoch, *("" if series[k][i] is None else series[k][i] for k in CURVE_KEYS)])
    return out.getvalue()


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
