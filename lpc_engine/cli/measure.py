"""`lpc analyze FILE.npz` and `lpc eval RUN_DIR`: the paper's measurements
on latents from anywhere, or on a saved run."""

from __future__ import annotations

import json
import sys
import warnings
import zipfile
from pathlib import Path
from typing import Any

import numpy as np
import typer
from rich.console import Console
from rich.table import Table

from lpc_engine.errors import UsageError
from lpc_engine.runs.load import load_run
from lpc_engine.training.measure import collapse_metrics, robustness
from lpc_engine.runs.store import json_safe

# What each metric is, in the order the paper reports them.
METRIC_GROUPS: tuple[tuple[str, tuple[tuple[str, str], ...]], ...] = (
    ("Table I: collapse", (
        ("separation_ratio", "class separation ratio R (eq. 8)"),
        ("sigma_w", "within-class covariance, mean entry (eq. 7)"),
        ("sigma_w_trace_ratio", "tr(Sigma_W) / tr(Sigma_total)"),
        ("norm_mean", "mean latent norm"),
        ("norm_cov", "CoV of the latent norm"),
        ("entropy_per_dim", "Kozachenko-Leonenko entropy / d (k=20)"),
        ("entropy_per_dim_standardized", "the same on standardised latents"))),
    ("Appendix E: neural collapse", (
        ("nc1", "NC1 Tr(Sigma_W Sigma_B^+)/K"), ("nc1_per_dim", "NC1 / d (Fig. 5)"),
        ("equinorm", "NC2 equinorm"), ("equiangularity", "NC2 equiangularity"),
        ("max_angle", "NC2 max-angle"), ("self_duality", "NC3 self-duality"),
        ("ncc_mismatch", "NC4 nearest-centre mismatch"))),
    ("Table IV: binarity", (
        ("gmm_score_mean", "GMM log-likelihood score, mean over nodes"),
        ("gmm_score_min", "GMM score, worst node"),
        ("gmm_std_mean", "GMM mean sigma (eq. D2)"),
        ("gmm_peak_distance_mean", "peak distance, mean (eq. D3)"),
        ("gmm_peak_distance_min", "peak distance, worst node"),
        ("abs_cov", "CoV of |z|"),
        ("codebook_distinct", "distinct class codes (hypercube vertices)"))),
    ("Table II: robustness", (
        ("robustness_mean", "DeepFool ||r||/||x||, mean"),
        ("robustness_median", "DeepFool ||r||/||x||, median"),
        ("robustness_correct_mean", "mean over correctly classified inputs"),
        ("deepfool_converged", "fraction of attacks that flipped the label"),
        ("test_acc", "test accuracy"), ("train_acc", "clean training accuracy"))),
)


def metrics_table(values: dict[str, Any], title: str) -> Table:
    table = Table(title=title, title_justify="left")
    for col, justify in (("metric", "left"), ("value", "right"), ("meaning", "left")):
        table.add_column(col, justify=justify)
    for group, rows in METRIC_GROUPS:
        present = [(k, m) for k, m in rows if k in values]
        if present:
            table.add_section()
            table.add_row(f"[bold]{group}[/]", "", "")
            for key, meaning in present:
                table.add_row(key, _fmt(values[key]), meaning)
    return table


def _fmt(value: Any) -> str:
    if value is None or (isinstance(value, float) and not np.isfinite(value)):
        return "-"
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def read_latents(path: Path) -> dict[str, np.ndarray]:
    """z (N, d), y (N,) and the optional classifier weights W (K, d) and
    predictions (N,) of an .npz file; UsageError naming what is wrong."""
    if not path.is_file():
        raise UsageError(f"analyze: file not found: {path}")
    try:
        with np.load(path, allow_pickle=False) as npz:
            arrays = {k: npz[k] for k in npz.files}
    except (zipfile.BadZipFile, ValueError, OSError) as exc:
        raise UsageError(f"analyze: {path} is not a readable .npz file ({exc})") from None
    missing = [k for k in ("z", "y") if k not in arrays]
    if missing:
        raise UsageError(f"analyze: {path} lacks {' and '.join(missing)} (has: "
                         f"{', '.join(sorted(arrays)) or 'nothing'}); expected z (N x d) and y (N)")
    y = arrays["y"]
    if y.dtype.kind not in "iub":
        if y.dtype.kind == "f" and np.all(np.isfinite(y)) and np.all(y == np.round(y)):
            arrays["y"] = y.astype(np.int64)
        else:
            raise UsageError(f"analyze: y must hold integer class labels, got dtype {y.dtype}")
    return arrays


def analyze(path: Path = typer.Argument(..., help="An .npz file with z (N x d) and y (N)."),
            as_json: bool = typer.Option(False, "--json", help="Print one JSON object.")) -> None:
    """Every latent metric of the paper on latents from anywhere."""
    from lpc_engine.metrics import latent_metrics

    arrays = read_latents(path)
    values = latent_metrics(arrays["z"], arrays["y"], classifier_weight=arrays.get("W"),
                            predictions=arrays.get("predictions"))
    n, d = arrays["z"].shape
    if as_json:
        sys.stdout.write(json.dumps(json_safe({"file": str(path), "n": n, "d": d, **values})) + "\n")
    else:
        Console().print(metrics_table(values, f"{path}: {n} latents, d = {d}"))


def eval_run(run_dir: Path = typer.Argument(..., help="A run directory."),
             samples: int = typer.Option(1000, "--samples", help="Test inputs attacked by DeepFool."),
             device: str = typer.Option("cpu", "--device", help="cpu, cuda, cuda:N."),
             seed: int = typer.Option(0, "--seed", help="Seed of the DeepFool sample."),
             as_json: bool = typer.Option(False, "--json", help="Print one JSON object.")) -> None:
    """Recompute the metrics and the robustness table of a saved run."""
    if samples < 0:
        raise UsageError(f"samples: must be >= 0, got {samples}")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        run = load_run(run_dir, device=device)
    for w in caught:  # a corrupt newest checkpoint passed over: one plain line
        sys.stderr.write(f"lpc: warning: {' '.join(str(w.message).split())}\n")
    metrics, _ = collapse_metrics(run.model, run.data)
    table = robustness(run.model, run.data, samples, seed) if samples else {}
    values = {**metrics, **table}
    if as_json:
        sys.stdout.write(json.dumps(json_safe({"run_dir": str(run_dir), "epoch": run.epoch, **values})) + "\n")
    else:
        Console().print(metrics_table(values, f"{run_dir} after epoch {run.epoch}"))
