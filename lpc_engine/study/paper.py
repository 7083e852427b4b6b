"""The paper's published numbers (Tables I, II, IV, Fig. 3, appendix C), for
putting a run beside them: the TUI's results pane, reports and docs.

`paper_tables.json` is a copy of ../shared/paper/tables.json: values as
printed, mean and std over five runs.
"""

from __future__ import annotations

import json
from functools import lru_cache
from importlib import resources
from typing import Any

@lru_cache(maxsize=1)
def paper_tables() -> dict[str, Any]:
    """The whole tables.json as a dict."""
    text = resources.files(__package__).joinpath("paper_tables.json").read_text(encoding="utf-8")
    return json.loads(text)


def paper_value(table: str, dataset: str, architecture: str, column: str) -> float | None:
    """The paper's mean of `column` for `architecture` (its Table III name,
    e.g. "LPC") on "CIFAR10" or "CIFAR100"; None where it printed none."""
    row = paper_tables().get(table, {}).get(dataset, {}).get(architecture, {})
    value = row.get(column)
    if isinstance(value, dict):
        value = value.get("mean")
    return float(value) if isinstance(value, (int, float)) else None
