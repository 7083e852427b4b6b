"""The rows of the runs table: runs at the top of the store as they are, and
each folder of runs (a sweep, a study) as one row that opens into its runs.

A folder's row sums up its runs: how many, their states, the epochs done
of all epochs, and the best test accuracy, R and robustness among them
(marked with an up arrow, since they may come from different runs). Folders
start closed, so a 55-run ablation is one line at 80x24; while a filter is
typed, every folder with a match is open and shows just its matches. A
folder inside a folder is a row of its own, after its parent's runs.
"""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass

from lpc_tui.widgets.tables import fmt

OPEN, CLOSED = "▾", "▸"


@dataclass(frozen=True)
class Row:
    """One line of the table: key (a run's name, or a folder's name and "/"),
    its cells, and the runs it stands for (one, or a folder's)."""

    key: str
    cells: tuple[str, ...]
    runs: tuple[str, ...]

    @property
    def is_group(self) -> bool:
        return self.key.endswith("/")


def group_key(group: str) -> str:
    return group + "/"


def short_names(names: list[str]) -> list[str]:
    """Each run by its own folder's name (its seed and settings, where a sweep
    named it), or by its whole path where two shown runs share that name."""
    own = [name.rsplit("/", 1)[-1] for name in names]
    return own if len(set(own)) == len(own) else list(names)


def table_rows(runs: list[dict], opened: set[str], marked: list[str], filter_text: str = "") -> list[Row]:
    """The table's rows for `runs` (list_runs rows): the top-level runs, then
    each folder's row followed, if it is in `opened` (or a filter is typed),
    by its runs, newest first."""
    needle = filter_text.strip().lower()
    shown = [r for r in runs if needle in r["name"].lower()]
    by_group: dict[str, list[dict]] = {}
    # By path parts, so a folder's subfolders follow it ("s", "s/t", then "s-b").
    for run in sorted(shown, key=lambda r: (r["group"].split("/"), -r["mtime"])):
        by_group.setdefault(run["group"], []).append(run)
    rows = [run_row(r, marked, indent=False) for r in by_group.pop("", [])]
    for group, members in by_group.items():
        is_open = bool(needle) or group in opened
        rows.append(folder_row(group, members, marked, is_open))
        if is_open:
            rows.extend(run_row(r, marked, indent=True) for r in members)
    return rows


def run_row(run: dict, marked: list[str], indent: bool) -> Row:
    name = "  " + run["name"].rsplit("/", 1)[-1] if indent else run["name"]
    cells = ("●" if run["name"] in marked else " ", name, run["state"],
             f"{run['epochs_done']}/{run['epochs']}", fmt(run["test_acc"]), fmt(run["separation_ratio"]),
             fmt(run["robustness_mean"]), run["preset"], run["dataset"])
    return Row(run["name"], cells, (run["name"],))


def folder_row(group: str, members: list[dict], marked: list[str], is_open: bool) -> Row:
    names = tuple(r["name"] for r in members)
    all_marked = all(n in marked for n in names)
    cells = ("●" if all_marked else " ", f"{OPEN if is_open else CLOSED} {group}/ ({len(names)})",
             _states(members), f"{sum(r['epochs_done'] for r in members)}/{sum(r['epochs'] for r in members)}",
             _best(members, "test_acc"), _best(members, "separation_ratio"), _best(members, "robustness_mean"),
             _common(members, "preset"), _common(members, "dataset"))
    return Row(group_key(group), cells, names)


def _states(members: list[dict]) -> str:
    """The one state all share, else the running count, else "mixed"."""
    counts = Counter(r["state"] for r in members)
    if len(counts) == 1:
        return next(iter(counts))
    return f"{counts['running']} running" if counts["running"] else "mixed"


def _best(members: list[dict], key: str) -> str:
    values = [r[key] for r in members if isinstance(r[key], (int, float)) and math.isfinite(r[key])]
    return "↑" + fmt(max(values)) if values else fmt(None)


def _common(members: list[dict], key: str) -> str:
    values = {r[key] for r in members}
    return values.pop() if len(values) == 1 else "mixed"
