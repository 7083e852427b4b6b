"""The paper's measurements on a live or saved model: clean latents in,
metrics out. Training calls these every `metrics_every` epochs; `lpc eval`
calls them on a saved run.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import Tensor

from lpc_engine.data.datasets import TensorData
from lpc_engine.training.epoch import clean_latents
from lpc_engine.events import LatentSample
from lpc_engine.metrics import latent_metrics
from lpc_engine.metrics.binarity import fit_node_mixtures
from lpc_engine.metrics.codebook import class_codebook
from lpc_engine.model.network import LpcModel
from lpc_engine.robustness import robustness_table


def model_metrics(model: LpcModel, data: TensorData) -> tuple[dict[str, float], Tensor]:
    """Every latent metric (Tables I and IV, appendix E) on the clean training
    set, grouped by true label; also returns the latents."""
    z, predictions = clean_latents(model, data.x_train)
    metrics = latent_metrics(z, data.y_train, classifier_weight=model.classifier.weight.detach(),
                             predictions=predictions)
    metrics["train_acc"] = (predictions == data.y_train).float().mean().item()
    return metrics, z


def latent_subsample(z: Tensor, y: Tensor, size: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """At most `size` rows of (z, y), drawn with a private generator (the
    training RNG stays untouched), as numpy arrays for histograms."""
    n = z.shape[0]
    if n > size:
        idx = torch.randperm(n, generator=torch.Generator().manual_seed(seed))[:size].to(z.device)
        z, y = z[idx], y[idx]
    return z.cpu().numpy(), y.cpu().numpy()


def latent_sample(z: Tensor, y: Tensor, epoch: int, size: int, seed: int) -> LatentSample:
    """What the TUI's histograms show: a subsample of the latents with each
    node's bimodality fitted on that very subsample (so score and picture
    agree), and the class codebook of all latents (section II.A)."""
    z_np, y_np = latent_subsample(z, y, size, seed)
    book = class_codebook(z, y)
    fits: dict[str, tuple] = {}
    if z_np.shape[0] >= 2:
        fit = fit_node_mixtures(torch.from_numpy(z_np), seed=seed)
        fits = {"node_score": tuple(fit.score.tolist()),
                "node_peak_distance": tuple(fit.peak_distance.tolist()),
                **{f"node_{k}": tuple(map(tuple, getattr(fit, k).tolist()))
                   for k in ("weights", "means", "stds")}}
    return LatentSample(epoch=epoch, z=z_np, y=y_np, classes=book.classes,
                        codes=tuple(tuple(c) for c in book.codes.tolist()), **fits)


def robustness(model: LpcModel, data: TensorData, samples: int, seed: int) -> dict[str, Any]:
    """Table II on the test set: DeepFool ratios ||r||/||x|| and accuracy."""
    return robustness_table(model, data.x_test, data.y_test, samples=samples, seed=seed)
