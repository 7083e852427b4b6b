"""Shared fixtures for the engine and CLI tests.

Training tests compare numbers across runs for exact equality, so they run on
the CPU with one intra-op thread: on a 2-core machine shared with other jobs,
two OpenMP threads that spin at barriers made a digits step ~100x slower
(measured: an MLP step 0.5 s with 2 threads under load vs 3 ms with 1).
"""

from __future__ import annotations

import math
import pickle
from pathlib import Path
from typing import Any

import numpy as np
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


def write_cifar10(root: Path, rng: np.random.Generator, per_batch: int = 3) -> tuple[np.ndarray, ...]:
    """cifar-10-batches-py with `per_batch` images a training batch and 4 test images."""
    folder = root / "cifar-10-batches-py"
    folder.mkdir(parents=True)
    xs, ys = [], []
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch"]:
        n = 4 if name == "test_batch" else per_batch
        x = rng.integers(0, 256, size=(n, 3072), dtype=np.uint8)  # rows: R, G, B planes
        y = rng.integers(0, 10, size=n).tolist()
        # The real files are Python 2 pickles whose str keys torchvision reads
        # back as str with encoding="latin1" (it indexes entry["data"]); bytes
        # keys (b"data") would only appear with encoding="bytes".
        with open(folder / name, "wb") as f:
            pickle.dump({"data": x, "labels": y}, f, protocol=2)
        xs.append(x)
        ys.append(y)
    with open(folder / "batches.meta", "wb") as f:
        pickle.dump({"label_names": [f"class{k}" for k in range(10)]}, f, protocol=2)
    train = np.concatenate(xs[:5]).reshape(-1, 3, 32, 32)
    test = xs[5].reshape(-1, 3, 32, 32)
    return train, np.concatenate(ys[:5]), test, np.array(ys[5])


@pytest.fixture(scope="session")
def helpers():
    """The helpers above, for test modules in sub-folders (no package imports)."""
    class H:
        pass
    h = H()
    h.without_timing, h.epoch_rows, h.tree = without_timing, epoch_rows, tree
    h.TIMING_KEYS, h.EPOCH_ROW_KEYS = TIMING_KEYS, EPOCH_ROW_KEYS
    h.write_cifar10 = write_cifar10
    return h
