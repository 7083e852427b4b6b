"""summary.json: the final numbers of a run, from its epoch rows."""

from __future__ import annotations

import math
from typing import Any

from lpc_engine.config import RunConfig

_LAST_ROW_KEYS = ("loss", "ce", "penalty", "gamma", "lr", "train_acc",
                  "latent_norm_mean", "latent_norm_cov")


def _finite(v: Any) -> bool:
    return isinstance(v, (int, float)) and math.isfinite(v)


def make_summary(cfg: RunConfig, rows: list[dict[str, Any]], status: str,
                 session_seconds: float, metrics: dict[str, float] | None = None,
                 robustness: dict[str, Any] | None = None) -> dict[str, Any]:
    """Status, what was trained, and the last epoch's scalars.

    `test_acc` is the last evaluated test accuracy; `seconds` adds up every
    epoch's wall time, across resumes; `metrics` holds the latest collapse
    metrics (DESIGN.md names) and `robustness` the final DeepFool table.
    """
    last = rows[-1] if rows else {}
    tested = [r for r in rows if _finite(r.get("test_acc"))]
    summary: dict[str, Any] = {
        "status": status,
        "preset": cfg.model.preset,
        "dataset": cfg.data.dataset,
        "backbone": cfg.model.backbone,
        "latent_dim": cfg.model.latent_dim,
        "seed": cfg.seed,
        "epochs": cfg.epochs,
        "epochs_done": last.get("epoch", 0),
        "test_acc": tested[-1]["test_acc"] if tested else None,
        "best_test_acc": max((r["test_acc"] for r in tested), default=None),
        "seconds": sum(r.get("seconds") or 0.0 for r in rows),
        "session_seconds": session_seconds,
    }
    summary.update({k: last.get(k) for k in _LAST_ROW_KEYS})
    summary["metrics"] = dict(metrics or {})
    summary["robustness"] = dict(robustness or {})
    return summary
