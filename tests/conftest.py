"""Shared fixtures for the engine and CLI tests.

Training tests compare numbers across runs for exact equality, so they run on
the CPU with one intra-op thread: on a 2-core machine shared with other jobs,
two OpenMP threads that spin at barriers made a digits step ~100x slower
(measured: an MLP step 0.5 s with 2 threads under load vs 3 ms with 1).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pytest
import torch

# Timing fields: the only ones two identical runs may disagree on.
TIMING_KEYS = frozenset({"seconds", "samples_per_s", "session_seconds"})

EPOCH_ROW_KEYS = frozenset({"event", "epoch", "loss", "ce", "penalty", "gamma", "lr", "train_acc",
                            "test_acc", "latent_norm_mean", "latent_norm_cov", "seconds"})


@pytest.fixture(autouse=True, scope="session")
def _one_cpu_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def without_timing(row: dict[str, Any]) -> dict[str, Any]:
    """`row` minus its wall-time fields, NaN made comparable (None)."""
    return {k: (None if isinstance(v, float) and math.isnan(v) else v)
            for k, v in row.items() if k not in TIMING_KEYS}


def epoch_rows(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [r for r in rows if r.get("event") == "epoch"]


def tree(path: Path) -> dict[str, tuple[bytes, int]]:
    """Every file under `path` with its bytes and mtime: to prove nothing changed."""
    if not path.exists():
        return {}
    return {str(p.relative_to(path)): (p.read_bytes(), p.stat().st_mtime_ns)
            for p in sorted(path.rglob("*")) if p.is_file()}


@pytest.fixture(scope="session")
def helpers():
    """The helpers above, for test modules in sub-folders (no package imports)."""
    class H:
        pass
    h = H()
    h.without_timing, h.epoch_rows, h.tree = without_timing, epoch_rows, tree
    h.TIMING_KEYS, h.EPOCH_ROW_KEYS = TIMING_KEYS, EPOCH_ROW_KEYS
    return h
