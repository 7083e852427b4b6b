"""Latent samples on disk: RUN/latents/epoch-EEEEEE.npz, one a measured
epoch (and one `lpc eval` writes), so that any run, headless or finished,
carries what the TUI's nodes and metrics panes draw.

Each file holds a bounded subsample of the clean training latents (`z`,
float32, at most `latent_sample_size` rows, and their labels `y`), each
node's 2-component mixture fit on that very subsample (score, peak distance,
weights, means, stds, in standardised units), and the class codebook. It is
a compressed .npz of plain arrays, read with allow_pickle=False, written
atomically: at most 0.5 MB at 2000 x 64 (float32 keeps the z of ~1e-4 that a
high gamma gives), less once compressed; 90 kB at digits' 1437 x 16.
"""

from __future__ import annotations

import io
import re
from pathlib import Path

import numpy as np

from lpc_engine.events import LatentSample
from lpc_engine.runs.durable import atomic_write, writing

FOLDER = "latents"
_NAME = re.compile(r"^epoch-(\d{6})\.npz$")


def latent_path(run_dir: str | Path, epoch: int) -> Path:
    return Path(run_dir) / FOLDER / f"epoch-{epoch:06d}.npz"


def write_latent_sample(run_dir: str | Path, sample: LatentSample) -> Path:
    """Write `sample` as RUN/latents/epoch-EEEEEE.npz (atomically; a failed
    write in mid-run raises StorageError)."""
    path = latent_path(run_dir, sample.epoch)
    arrays = {
        "epoch": np.asarray(sample.epoch, dtype=np.int64),
        "z": np.asarray(sample.z, dtype=np.float32), "y": np.asarray(sample.y, dtype=np.int64),
        "node_score": np.asarray(sample.node_score, dtype=np.float64),
        "node_peak_distance": np.asarray(sample.node_peak_distance, dtype=np.float64),
        "node_weights": np.asarray(sample.node_weights, dtype=np.float64).reshape(-1, 2),
        "node_means": np.asarray(sample.node_means, dtype=np.float64).reshape(-1, 2),
        "node_stds": np.asarray(sample.node_stds, dtype=np.float64).reshape(-1, 2),
        "classes": np.asarray(sample.classes, dtype=np.int64),
        "codes": np.asarray(sample.codes, dtype=np.int8).reshape(len(sample.classes), -1),
    }
    buffer = io.BytesIO()
    np.savez_compressed(buffer, **arrays)
    with writing(path):
        path.parent.mkdir(exist_ok=True)
        atomic_write(path, buffer.getvalue())
    return path


def read_latent_sample(path: str | Path) -> LatentSample:
    """A latents file back as the event it was written from."""
    with np.load(path, allow_pickle=False) as npz:
        a = {k: npz[k] for k in npz.files}
    pairs = lambda key: tuple(tuple(map(float, row)) for row in a[key])  # noqa: E731
    return LatentSample(
        epoch=int(a["epoch"]), z=a["z"], y=a["y"],
        node_score=tuple(map(float, a["node_score"])),
        node_peak_distance=tuple(map(float, a["node_peak_distance"])),
        node_weights=pairs("node_weights"), node_means=pairs("node_means"), node_stds=pairs("node_stds"),
        classes=tuple(map(int, a["classes"])), codes=tuple(tuple(map(int, row)) for row in a["codes"]))


def latent_files(run_dir: str | Path) -> dict[int, Path]:
    """{epoch: file} of a run's latent samples, in epoch order."""
    folder = Path(run_dir) / FOLDER
    if not folder.is_dir():
        return {}
    found = {int(m.group(1)): p for p in folder.iterdir() if (m := _NAME.match(p.name))}
    return dict(sorted(found.items()))
