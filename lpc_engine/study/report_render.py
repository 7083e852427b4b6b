"""`lpc report` output: markdown, CSV and JSON of the same numbers (the
charts for a terminal: cli/report_charts.py)."""

from __future__ import annotations

import csv
import io
from typing import Any

from lpc_engine.metrics.columns import TABLE_TITLES, fmt
from lpc_engine.study.report import CURVE_KEYS, MIN_OVER_RUNS, TABLE_COLUMNS, Row, pooling_warnings, row_label


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
    warnings = pooling_warnings(rows)
    if warnings:
        lines += ["", *(f"Warning: {line}" for line in warnings)]
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
