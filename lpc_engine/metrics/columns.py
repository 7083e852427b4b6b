"""The one table of metric columns: every measured quantity's JSON name
(DESIGN.md), short label, meaning, number format, and the paper's table
and column where it prints one. `lpc run`'s summary, `lpc eval`/`lpc
analyze`, `lpc report` and the TUI's tables all read it, and format
numbers with `fmt`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

# The paper's tables a metric can stand in, in tables.json's names.
TABLE_TITLES = {"table1": "Table I: collapse", "table2": "Table II: robustness",
                "table4": "Table IV: binarity (min columns: over nodes and runs)"}


@dataclass(frozen=True)
class Column:
    key: str  # the JSON name (DESIGN.md), also the column of tables.json
    label: str  # a few characters, for a row label
    meaning: str  # one line, with the paper's equation
    group: str  # where `lpc eval` lists it
    spec: str = ".4g"  # format of a single value
    table: str = ""  # the paper's table that prints it (TABLE_TITLES), if any
    header: str = ""  # its header there (default: the label)

    @property
    def heading(self) -> str:
        return self.header or self.label


_I, _E, _IV, _II = ("Table I: collapse", "Appendix E: neural collapse", "Table IV: binarity",
                    "Table II: robustness")
COLUMNS: tuple[Column, ...] = (
    Column("separation_ratio", "R", "class separation ratio R (eq. 8)", _I, table="table1"),
    Column("sigma_w", "Σ_W", "within-class covariance, mean entry (eq. 7)", _I, table="table1"),
    Column("sigma_w_trace_ratio", "tr Σ_W/tr Σ_T", "tr(Sigma_W) / tr(Sigma_total)", _I, spec=".3g"),
    Column("norm_mean", "mean ‖z‖", "mean latent norm", _I),
    Column("norm_cov", "CoV ‖z‖", "CoV of the latent norm", _I, table="table1", header="CoV"),
    Column("entropy_per_dim", "entropy/d", "Kozachenko-Leonenko entropy / d (k=20)", _I, table="table1"),
    Column("entropy_per_dim_standardized", "entropy/d std.", "the same on standardised latents", _I),
    Column("nc1", "NC1", "NC1 Tr(Sigma_W Sigma_B^+)/K", _E),
    Column("nc1_per_dim", "NC1/d", "NC1 / d (Fig. 5)", _E),
    Column("equinorm", "NC2 equinorm", "NC2 equinorm", _E),
    Column("equiangularity", "NC2 equiangular", "NC2 equiangularity", _E),
    Column("max_angle", "NC2 max-angle", "NC2 max-angle, mean over classes of the max (Papyan et al.)", _E),
    Column("max_angle_pair_mean", "NC2 angle, pairs", "NC2 max-angle as the authors' code: mean over pairs",
           _E),
    Column("self_duality", "NC3 self-duality", "NC3 self-duality", _E),
    Column("ncc_mismatch", "NC4 NCC mismatch", "NC4 nearest-centre mismatch", _E),
    Column("gmm_score_mean", "GMM score", "GMM log-likelihood score, mean over nodes", _IV,
           table="table4"),
    Column("gmm_score_min", "GMM score min", "GMM score, worst node", _IV, table="table4", header="min"),
    Column("gmm_std_mean", "GMM sigma", "GMM mean sigma (eq. D2)", _IV),
    Column("gmm_peak_distance_mean", "peak distance", "peak distance, mean (eq. D3)", _IV,
           table="table4", header="peak dist."),
    Column("gmm_peak_distance_min", "peak distance min", "peak distance, worst node", _IV, spec=".3g",
           table="table4", header="min"),
    Column("abs_cov", "CoV |z|", "CoV of |z|", _IV, table="table4", header="CoV abs(z)"),
    Column("codebook_distinct", "distinct codes", "distinct class codes (hypercube vertices)", _IV,
           spec=".0f"),
    Column("robustness_mean", "‖r‖/‖x‖", "DeepFool ||r||/||x||, mean", _II, table="table2"),
    Column("robustness_median", "median ‖r‖/‖x‖", "DeepFool ||r||/||x||, median", _II),
    Column("robustness_correct_mean", "‖r‖/‖x‖ correct", "mean over correctly classified inputs", _II),
    Column("deepfool_converged", "converged", "fraction of attacks that flipped the label", _II),
    Column("test_acc_percent", "test acc %", "test accuracy in percent", _II, table="table2"),
    Column("test_acc", "test acc", "test accuracy", _II),
    Column("train_acc", "train acc", "clean training accuracy", _II),
)
BY_KEY: dict[str, Column] = {c.key: c for c in COLUMNS}
GROUPS: tuple[str, ...] = (_I, _E, _IV, _II)


def columns(*keys: str) -> tuple[Column, ...]:
    """The columns of `keys`, in that order."""
    return tuple(BY_KEY[k] for k in keys)


def table_columns(table: str) -> tuple[Column, ...]:
    """The columns the paper prints in `table` ("table1", "table2", "table4"), in its order."""
    return tuple(c for c in COLUMNS if c.table == table)


def fmt(value: Any, spec: str = ".4g", missing: str = "-") -> str:
    """One number as text: `missing` for None, NaN and non-numbers.

    spec is a format spec (".4g", for floats: integers print whole), or one of two styles for the paper's
    range (1e-13 .. 1e12): "compact" (integers whole, else 3 significant
    digits, or 3 in scientific notation below 1e-3; the TUI) and "wide" (4
    significant digits, scientific outside [1e-3, 1e5); reports)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return missing if value is None or spec in ("compact", "wide") else str(value)
    if not math.isfinite(value):
        return missing
    if spec == "compact":
        if isinstance(value, int) or (value.is_integer() and abs(value) < 1e6):
            return str(int(value))
        return f"{value:.3g}" if abs(value) >= 1e-3 or value == 0 else f"{value:.2e}"
    if spec == "wide":
        return f"{value:.3e}" if value != 0 and (abs(value) < 1e-3 or abs(value) >= 1e5) else f"{value:.4g}"
    return str(value) if isinstance(value, int) else format(value, spec)
