"""`load_run(run_dir)`: a saved run back in Python (DESIGN.md, contracts)."""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import NamedTuple

import torch
from torch import Tensor

from lpc_engine.config import RunConfig
from lpc_engine.config_io import config_from_dict
from lpc_engine.data.datasets import TensorData, load_data
from lpc_engine.errors import UsageError
from lpc_engine.model.network import LpcModel, build_model
from lpc_engine.presets import get_preset
from lpc_engine.runs.checkpoint_files import load_checkpoint, load_newest
from lpc_engine.runs.store import RunStore


class LoadedRun(NamedTuple):
    config: RunConfig
    model: LpcModel  # eval mode; model(x) -> ModelOutput(logits, latent, features)
    x_test: Tensor  # normalised, as the model sees them
    y_test: Tensor
    data: TensorData  # both splits, for metrics on training latents
    epoch: int  # the checkpoint's last completed epoch


def load_run(run_dir: str | Path, device: str | torch.device = "cpu",
             checkpoint: str | Path | None = None) -> LoadedRun:
    """The run's config, its model from the newest (or the given) checkpoint,
    and its normalised test tensors, all on `device`."""
    store = RunStore(run_dir)
    if not store.exists():
        raise UsageError(f"run: {run_dir} is not a run directory (no config.json)")
    state = _checkpoint_state(store, checkpoint, device)
    cfg = config_from_dict(store.read_config())
    data = load_data(cfg.data.dataset, cfg.data.data_dir or None, False, device, image_size=cfg.data.image_size)
    model = build_model(cfg.model.backbone, get_preset(cfg.model.preset).head, data.input_shape,
                        data.num_classes, cfg.model.latent_dim, cfg.model.classifier_bias)
    model.load_state_dict(state["model"])
    model.to(device).eval()
    return LoadedRun(cfg, model, data.x_test, data.y_test, data, state["epoch"])


def _checkpoint_state(store: RunStore, checkpoint: str | Path | None, device) -> dict:
    """The given checkpoint, or the newest one that verifies; a corrupt
    newest one is passed over with a warning, as on resume."""
    if checkpoint:
        return load_checkpoint(checkpoint, device)
    path, state, skipped = load_newest(store.checkpoints(), device)
    for bad, why in skipped:
        warnings.warn(f"{why}; using an older checkpoint", stacklevel=3)
    if path is None:
        raise UsageError(skipped[0][1] if skipped else f"run: {store.dir} has no checkpoint")
    return state
