"""Rich tables of a run's numbers: the live collapse metrics, the class
codebook, and the results beside the paper's CIFAR-10 rows."""

from __future__ import annotations

from typing import Any

from rich.console import Group
from rich.table import Table
from rich.text import Text

from lpc_engine.events import LatentSample
from lpc_engine.metrics.columns import TABLE_TITLES, columns, table_columns
from lpc_engine.metrics.columns import fmt as format_number
from lpc_engine.study.paper import paper_value

LIVE_METRICS = columns(
    "separation_ratio", "sigma_w", "sigma_w_trace_ratio", "norm_cov", "entropy_per_dim", "nc1",
    "equinorm", "equiangularity", "self_duality", "ncc_mismatch", "gmm_score_mean",
    "gmm_peak_distance_mean", "codebook_distinct")
PAPER_ROWS = ("LPC", "NoPen")  # the method and the baseline, for scale


def fmt(value: Any) -> str:
    """Compact numbers across the paper's range (1e-13 .. 1e12)."""
    return format_number(value, "compact", missing="—")


def metrics_table(metrics: dict[str, float], epoch: int) -> Table:
    table = Table(title=f"collapse metrics · epoch {epoch}" if epoch else "collapse metrics",
                  show_header=False, box=None, padding=(0, 1), title_justify="left")
    table.add_column(style="bold")
    table.add_column(justify="right")
    for c in LIVE_METRICS:
        table.add_row(c.label, fmt(metrics.get(c.key)))
    return table


def codebook_text(sample: LatentSample | None, distinct: float | None = None) -> Text:
    """Each class's sign pattern over the nodes (its hypercube vertex)."""
    if sample is None or not sample.codes:
        return Text("class codebook: after the first metrics", style="dim")
    count = len({tuple(c) for c in sample.codes})
    text = Text(f"class codebook · {count} distinct of {len(sample.codes)}\n", style="bold")
    seen: dict[tuple[int, ...], int] = {}
    for label, code in zip(sample.classes, sample.codes):
        first = seen.setdefault(tuple(code), label)
        pattern = "".join("+" if v > 0 else "-" for v in code)
        text.append(f"{label:>3} {pattern}", style="red" if first != label else "")
        text.append(f"  = class {first}\n" if first != label else "\n")
    return text


def run_values(summary: dict[str, Any], metrics: dict[str, float],
               robustness: dict[str, Any]) -> dict[str, Any]:
    """This run's numbers under the paper's column names."""
    values: dict[str, Any] = {**metrics, **robustness}
    acc = robustness.get("test_acc", summary.get("test_acc"))
    values["test_acc_percent"] = 100 * acc if isinstance(acc, (int, float)) else None
    return values


def paper_comparison(values: dict[str, Any], label: str = "this run") -> Group:
    """Tables I, II, IV: this run beside the paper's CIFAR-10 LPC and NoPen."""
    tables = []
    for name, title in TABLE_TITLES.items():
        columns = table_columns(name)
        table = Table(title=title, title_justify="left", padding=(0, 1))
        table.add_column("")
        for c in columns:
            table.add_column(c.heading, justify="right")
        table.add_row(label, *(fmt(values.get(c.key)) for c in columns), style="bold")
        for arch in PAPER_ROWS:
            table.add_row(f"paper {arch}", *(fmt(paper_value(name, "CIFAR10", arch, c.key))
                                             for c in columns), style="dim")
        tables.append(table)
    return Group(*tables)


def robustness_table(table: dict[str, Any]) -> Table:
    out = Table(title="DeepFool robustness (test set)", title_justify="left", show_header=False,
                box=None, padding=(0, 1))
    out.add_column(style="bold")
    out.add_column(justify="right")
    for key, label in (("robustness_mean", "mean ‖r‖/‖x‖"), ("robustness_median", "median"),
                       ("robustness_correct_mean", "mean, correctly classified"),
                       ("deepfool_converged", "converged"), ("test_acc", "test accuracy"),
                       ("samples", "inputs attacked")):
        out.add_row(label, fmt(table.get(key)))
    return out
