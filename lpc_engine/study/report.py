"""Paper-style tables across runs (Tables I, II, IV), the R-robustness
correlation (Fig. 3) and metric curves over training (Figs. 4, 5).

The paper reports, per architecture, the mean and standard deviation over
five seeds at the best learning rate, chosen by final test accuracy
(section III); Table IV's minima are over nodes *and* runs. A report here
groups the runs of a directory by architecture and learning rate, or with
`best_lr` keeps for each architecture the learning rate of the best mean
final test accuracy.
"""

from __future__ import annotations

import math
import statistics
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lpc_engine.metrics.columns import TABLE_TITLES, Column, table_columns
from lpc_engine.presets import PRESETS
from lpc_engine.runs.reader import RunReader

# The paper's tables and their columns, in its order (metrics/columns.py).
TABLE_COLUMNS: dict[str, tuple[Column, ...]] = {t: table_columns(t) for t in TABLE_TITLES}
MIN_OVER_RUNS = frozenset({"gmm_score_min", "gmm_peak_distance_min"})  # Table IV: min, not mean
CURVE_KEYS = ("nc1", "nc1_per_dim", "gmm_score_mean", "gmm_std_mean", "gmm_peak_distance_mean")
PAPER_ORDER = tuple(PRESETS)  # Table III's order, which Tables I, II and IV follow
# Config fields that may differ between the seeds a row pools: the row's own
# keys, the seed, and how and where a run was executed (not what it trained).
NOT_A_SETTING = frozenset({"seed", "optim.lr", "model.preset", "profile", "device", "compile", "data_placement",
                           "loader_workers", "log_to", "eval_every", "metrics_every", "checkpoint_every",
                           "checkpoint_minutes", "data.data_dir", "data.download"})


@dataclass(frozen=True)
class RunResult:
    """One finished run: what the tables need."""

    name: str
    preset: str
    lr: float
    seed: int
    values: dict[str, float]  # metric name -> final value (test_acc_percent included)
    curves: dict[int, dict[str, float]] = field(default_factory=dict)  # epoch -> metrics
    setting: dict[str, Any] = field(default_factory=dict)  # "table.field" -> value, NOT_A_SETTING left out


@dataclass(frozen=True)
class Row:
    """One architecture (at one learning rate): mean, std and n over its seeds."""

    preset: str
    lr: float
    runs: tuple[str, ...]
    mean: dict[str, float]
    std: dict[str, float]
    differs: tuple[str, ...] = ()  # settings its runs do not share: they are not seeds of one run
    repeated_seeds: tuple[int, ...] = ()  # seeds held by more than one of its runs


def collect(runs_dir: str | Path) -> tuple[list[RunResult], list[str]]:
    """Finished runs under `runs_dir` (one level), and the names skipped with why."""
    return collect_dirs(sorted(Path(runs_dir).iterdir()) if Path(runs_dir).is_dir() else [])


def collect_dirs(run_dirs: Iterable[Path]) -> tuple[list[RunResult], list[str]]:
    """The finished runs among `run_dirs`, and the others' names with why."""
    results, skipped = [], []
    for run_dir in run_dirs:
        run = RunReader(run_dir)
        if not run.exists():
            continue
        summary = run.summary() or {}
        if summary.get("status") != "finished":
            skipped.append(f"{run_dir.name} ({summary.get('status', 'incomplete')})")
            continue
        results.append(_result(run, run.config(), summary))
    return results, skipped


def _result(run: RunReader, config: dict[str, Any], summary: dict[str, Any]) -> RunResult:
    values = {k: v for k, v in (summary.get("metrics") or {}).items() if _number(v)}
    values.update({k: v for k, v in (summary.get("robustness") or {}).items()
                   if k.startswith("robustness") and _number(v)})
    if _number(summary.get("test_acc")):
        values["test_acc_percent"] = 100.0 * summary["test_acc"]
    curves = {int(r.epoch): {k: v for k, v in (r.metrics or {}).items() if k in CURVE_KEYS}
              for r in run.metrics_rows()}
    return RunResult(name=run.dir.name, preset=config["model"]["preset"], lr=config["optim"]["lr"],
                     seed=config["seed"], values=values, curves=curves, setting=_setting(config))


def _setting(config: dict[str, Any]) -> dict[str, Any]:
    flat = {f"{table}.{k}": v for table, fields in config.items() if isinstance(fields, dict)
            for k, v in fields.items()}
    flat.update({k: v for k, v in config.items() if not isinstance(v, dict)})
    return {k: v for k, v in flat.items() if k not in NOT_A_SETTING}


def _number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def table_rows(results: Iterable[RunResult], best_lr: bool = False) -> list[Row]:
    """Rows in the paper's order: per architecture and learning rate, or per
    architecture at its best learning rate (mean final test accuracy)."""
    groups: dict[tuple[str, float], list[RunResult]] = {}
    for r in results:
        groups.setdefault((r.preset, r.lr), []).append(r)
    rows = [_row(preset, lr, group) for (preset, lr), group in groups.items()]
    if best_lr:
        best: dict[str, Row] = {}
        for row in rows:
            acc = row.mean.get("test_acc_percent", -math.inf)
            if row.preset not in best or acc > best[row.preset].mean.get("test_acc_percent", -math.inf):
                best[row.preset] = row
        rows = list(best.values())
    return sorted(rows, key=lambda r: (_order(r.preset), r.lr))


def _order(preset: str) -> int:
    return PAPER_ORDER.index(preset) if preset in PAPER_ORDER else len(PAPER_ORDER)


def _row(preset: str, lr: float, group: list[RunResult]) -> Row:
    keys = {k for r in group for k in r.values}
    mean, std = {}, {}
    for key in sorted(keys):
        values = [r.values[key] for r in group if key in r.values]
        mean[key] = min(values) if key in MIN_OVER_RUNS else statistics.fmean(values)
        std[key] = statistics.stdev(values) if len(values) > 1 and key not in MIN_OVER_RUNS else 0.0
    settings = {k for r in group for k in r.setting}
    differs = tuple(sorted(k for k in settings if len({repr(r.setting.get(k)) for r in group}) > 1))
    seeds = Counter(r.seed for r in group)
    return Row(preset=preset, lr=lr, runs=tuple(sorted(r.name for r in group)), mean=mean, std=std,
               differs=differs, repeated_seeds=tuple(sorted(s for s, n in seeds.items() if n > 1)))


def pooling_warnings(rows: list[Row]) -> list[str]:
    """One line for each row whose runs are not seeds of one setting: the
    mean and std over them would mix different experiments."""
    lines = []
    for r in rows:
        if r.differs:
            lines.append(f"{row_label(r, rows)} pools runs that differ in {', '.join(r.differs)}: report "
                         "their folders apart")
        if r.repeated_seeds:
            lines.append(f"{row_label(r, rows)} pools runs with the same seed "
                         f"({', '.join(map(str, r.repeated_seeds))}): they are not independent")
    return lines


def pearson(xs: list[float], ys: list[float]) -> float | None:
    """Pearson's r, or None with fewer than 3 points or no spread."""
    if len(xs) < 3:
        return None
    mx, my = statistics.fmean(xs), statistics.fmean(ys)
    sxy = sum((x - mx) * (y - my) for x, y in zip(xs, ys))
    sxx, syy = sum((x - mx) ** 2 for x in xs), sum((y - my) ** 2 for y in ys)
    return sxy / math.sqrt(sxx * syy) if sxx > 0 and syy > 0 else None


def correlation(results: Iterable[RunResult]) -> dict[str, Any]:
    """Fig. 3: R against robustness, one point per run, and Pearson's r."""
    points = [(r.name, r.values["separation_ratio"], r.values["robustness_mean"]) for r in results
              if "separation_ratio" in r.values and "robustness_mean" in r.values]
    return {"pearson": pearson([p[1] for p in points], [p[2] for p in points]),
            "points": [{"run": n, "separation_ratio": x, "robustness_mean": y} for n, x, y in points]}


def curves(results: Iterable[RunResult], rows: list[Row]) -> dict[str, dict[str, list]]:
    """Figs. 4, 5: per row, the mean over its runs of each curve metric at
    every epoch where all of them measured."""
    by_name = {r.name: r for r in results}
    out: dict[str, dict[str, list]] = {}
    for row in rows:
        members = [by_name[n] for n in row.runs]
        epochs = sorted(set.intersection(*(set(m.curves) for m in members))) if members else []
        series: dict[str, list] = {"epoch": epochs}
        for key in CURVE_KEYS:
            series[key] = [_mean_at(members, e, key) for e in epochs]
        out[row_label(row, rows)] = series
    return out


def _mean_at(members: list[RunResult], epoch: int, key: str) -> float | None:
    values = [m.curves[epoch][key] for m in members if _number(m.curves[epoch].get(key))]
    return statistics.fmean(values) if values else None


def row_label(row: Row, rows: list[Row]) -> str:
    """The paper's name, with the learning rate when an architecture has several rows."""
    name = PRESETS[row.preset].name if row.preset in PRESETS else row.preset
    several = sum(r.preset == row.preset for r in rows) > 1
    return f"{name} lr={row.lr:g}" if several else name
