"""`lpc analyze FILE.npz` and `lpc eval RUN_DIR`: the paper's measurements
on latents from anywhere, or on a saved run."""

from __future__ import annotations

from typing import Annotated

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

from lpc_engine.errors import StorageError, UsageError
from lpc_engine.runs.latents import write_latent_sample
from lpc_engine.metrics.columns import COLUMNS, GROUPS, fmt
from lpc_engine.runs.load import load_run
from lpc_engine.training.session import pick_device
from lpc_engine.config import valid_device
from lpc_engine.training.measure import latent_sample, model_metrics, robustness
from lpc_engine.runs.store import json_safe

def metrics_table(values: dict[str, Any], title: str) -> Table:
    """Every metric in `values`, grouped as the paper reports them (metrics/columns.py)."""
    table = Table(title=title, title_justify="left")
    for col, justify in (("metric", "left"), ("value", "right"), ("meaning", "left")):
        table.add_column(col, justify=justify)
    for group in GROUPS:
        present = [c for c in COLUMNS if c.group == group and c.key in values]
        if present:
            table.add_section()
            table.add_row(f"[bold]{group}[/]", "", "")
            for c in present:
                table.add_row(c.key, fmt(values[c.key], c.spec), c.meaning)
    return table


def read_latents(path: Path) -> dict[str, np.ndarray]:
    """z (N, d), y (N,) and the optional classifier weights W (K, d) and
    predictions (N,) of an .npz file; UsageError naming what is wrong."""
    if not path.is_file():
        raise UsageError(f"analyze: file not found: {path}")
    try:
        loaded = np.load(path, allow_pickle=False)
    except (zipfile.BadZipFile, ValueError, OSError) as exc:
        raise UsageError(f"analyze: {path} is not a readable .npz file ({exc})") from None
    if not isinstance(loaded, np.lib.npyio.NpzFile):  # a lone .npy array: no y beside it
        raise UsageError(f"analyze: {path} holds one array, not an .npz file with z (N x d) and y (N) "
                         "(np.savez(path, z=z, y=y) writes one)")
    try:
        with loaded as npz:
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


def analyze(path: Annotated[Path, typer.Argument(help="An .npz file with z (N x d) and y (N).")],
            as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False) -> None:
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


def eval_run(run_dir: Annotated[Path, typer.Argument(help="A run directory.")],
             samples: Annotated[int, typer.Option("--samples", help="Test inputs attacked by DeepFool.")] = 1000,
             device: Annotated[str, typer.Option("--device", help="auto, cpu, cuda, cuda:N.")] = "cpu",
             seed: Annotated[int, typer.Option("--seed", help="Seed of the DeepFool sample.")] = 0,
             as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False) -> None:
    """Recompute the metrics and the robustness table of a saved run."""
    if samples < 0:
        raise UsageError(f"samples: must be >= 0, got {samples}")
    if not valid_device(device):
        raise UsageError(f"device: expected auto, cpu, cuda or cuda:N, got {device!r}")
    device = str(pick_device(device))  # a CUDA device where there is none: said as `lpc run` says it
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        run = load_run(run_dir, device=device)
    for w in caught:  # a corrupt newest checkpoint passed over: one plain line
        sys.stderr.write(f"lpc: warning: {' '.join(str(w.message).split())}\n")
    metrics, z = model_metrics(run.model, run.data)
    if run.config.latent_sample_size:
        _write_sample(run_dir, latent_sample(z, run.data.y_train, run.epoch, run.config.latent_sample_size,
                                             run.config.seed + run.epoch))
    table = robustness(run.model, run.data, samples, seed) if samples else {}
    values = {**metrics, **table}
    if as_json:
        sys.stdout.write(json.dumps(json_safe({"run_dir": str(run_dir), "epoch": run.epoch, **values})) + "\n")
    else:
        Console().print(metrics_table(values, f"{run_dir} after epoch {run.epoch}"))


def _write_sample(run_dir: Path, sample) -> None:
    """The latents of the checkpoint's epoch into the run, for the TUI's nodes
    pane (runs/latents.py); a folder that takes no writes costs a warning only."""
    try:
        write_latent_sample(run_dir, sample)
    except StorageError as exc:
        sys.stderr.write(f"lpc: warning: latent sample not saved: {exc}\n")
