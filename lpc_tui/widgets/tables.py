"""Rich tables of a run's numbers: the live collapse metrics, the class
codebook, and the results beside the paper's CIFAR-10 rows."""

from __future__ import annotations

import math
from typing import Any

from rich.console import Group
from rich.table import Table
from rich.text import Text

from lpc_engine.events import LatentSample
from lpc_engine.study.paper import paper_value

LIVE_METRICS = (
    ("separation_ratio", "R"), ("sigma_w", "Σ_W"), ("sigma_w_trace_ratio", "tr Σ_W/tr Σ_T"),
    ("norm_cov", "CoV ‖z‖"), ("entropy_per_dim", "entropy/d"), ("nc1", "NC1"),
    ("equinorm", "NC2 equinorm"), ("equiangularity", "NC2 equiangular"),
    ("self_duality", "NC3 self-duality"), ("ncc_mismatch", "NC4 NCC mismatch"),
    ("gmm_score_mean", "GMM score"), ("gmm_peak_distance_mean", "peak distance"),
    ("codebook_distinct", "distinct codes"),
)
# (table name, title, [(our key, column in tables.json, header)])
PAPER_TABLES = (
    ("table1", "Table I: collapse", [
        ("separation_ratio", "separation_ratio", "R"), ("sigma_w", "sigma_w", "Σ_W"),
        ("norm_cov", "norm_cov", "CoV"), ("entropy_per_dim", "entropy_per_dim", "entropy/d")]),
    ("table2", "Table II: robustness", [
        ("robustness_mean", "robustness_mean", "‖r‖/‖x‖"), ("test_acc_percent", "test_acc_percent", "test acc %")]),
    ("table4", "Table IV: binarity", [
        ("gmm_score_mean", "gmm_score_mean", "score"), ("gmm_score_min", "gmm_score_min", "min"),
        ("gmm_peak_distance_mean", "gmm_peak_distance_mean", "peak d."),
        ("gmm_peak_distance_min", "gmm_peak_distance_min", "min"), ("abs_cov", "abs_cov", "CoV|z|")]),
)
PAPER_ROWS = ("LPC", "NoPen")  # the method and the baseline, for scale


def fmt(value: Any) -> str:
    """Compact numbers across the paper's range (1e-13 .. 1e12)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return "—"
    if not math.isfinite(value):
        return str(value)
    if isinstance(value, int) or (value == int(value) and abs(value) < 1e6):
        return f"{int(value)}" if float(value).is_integer() else f"{value:.4g}"
    return f"{value:.3g}" if abs(value) >= 1e-3 or value == 0 else f"{value:.2e}"


def metrics_table(metrics: dict[str, float], epoch: int) -> Table:
    table = Table(title=f"collapse metrics · epoch {epoch}" if epoch else "collapse metrics",
                  show_header=False, box=None, padding=(0, 1), title_justify="left")
    table.add_column(style="bold")
    table.add_column(justify="right")
    for key, label in LIVE_METRICS:
        table.add_row(label, fmt(metrics.get(key)))
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
    for name, title, columns in PAPER_TABLES:
        table = Table(title=title, title_justify="left", padding=(0, 1))
        table.add_column("")
        for _, _, header in columns:
            table.add_column(header, justify="right")
        table.add_row(label, *(fmt(values.get(key)) for key, _, _ in columns), style="bold")
        for arch in PAPER_ROWS:
            table.add_row(f"paper {arch}", *(fmt(paper_value(name, "CIFAR10", arch, col))
                                             for _, col, _ in columns), style="dim")
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
