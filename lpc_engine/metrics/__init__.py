"""The paper's latent-space metrics: Table I, appendix D (Table IV), appendix E.

    >>> m = latent_metrics(z, y, classifier_weight=model.classifier.weight, predictions=pred)
    >>> m["separation_ratio"], m["gmm_peak_distance_min"]

`latent_metrics` takes numpy arrays or torch tensors (CPU or CUDA), computes
on the device of z in float64 (the k-NN ranks in float32, then re-measures),
and returns plain Python floats for every name in `METRIC_NAMES`, NaN where a
metric needs an input that was not given (NC3 without classifier weights,
NC4 without predictions). Classes are the TRUE labels y throughout.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import Tensor

from lpc_engine.errors import UsageError
from lpc_engine.metrics.binarity import NodeMixtures, binarity_metrics, fit_node_mixtures, standardize
from lpc_engine.metrics.codebook import Codebook, class_codebook, codebook_from_means
from lpc_engine.metrics.collapse import R_CAP, ClassStats, centre_distances, class_stats, collapse_metrics
from lpc_engine.metrics.entropy import EPS_FLOOR_REL, K_NEIGHBOURS, EntropyEstimate, entropy_metrics, kl_entropy
from lpc_engine.metrics.neural_collapse import neural_collapse_metrics

METRIC_NAMES: tuple[str, ...] = (
    "sigma_w", "sigma_w_trace_ratio", "separation_ratio", "norm_mean", "norm_cov", "abs_cov",
    "entropy_per_dim", "entropy_per_dim_standardized",
    "nc1", "nc1_per_dim", "equinorm", "equiangularity", "max_angle", "max_angle_pair_mean",
    "self_duality", "ncc_mismatch",
    "gmm_score_mean", "gmm_score_min", "gmm_std_mean", "gmm_peak_distance_mean",
    "gmm_peak_distance_min", "codebook_distinct",
)

__all__ = [
    "METRIC_NAMES", "latent_metrics", "Codebook", "class_codebook", "ClassStats", "class_stats",
    "EntropyEstimate", "kl_entropy", "NodeMixtures", "fit_node_mixtures", "binarity_metrics",
    "standardize", "R_CAP", "EPS_FLOOR_REL", "K_NEIGHBOURS",
]


def _tensor(value: Any, name: str, device: torch.device | None = None) -> Tensor:
    """A detached tensor from a numpy array, tensor or nested list, on `device` if given."""
    try:
        t = value.detach() if isinstance(value, Tensor) else torch.as_tensor(np.asarray(value))
    except (TypeError, ValueError) as exc:
        raise UsageError(f"{name} is not a numeric array: {exc}") from None
    if t.dtype == torch.bool or t.is_complex():
        raise UsageError(f"{name} must hold real numbers; got {t.dtype}")
    return t if device is None else t.to(device)


def _labels(value: Any, name: str, n: int, device: torch.device) -> Tensor:
    """(n,) int64 labels; integral floats are accepted."""
    t = _tensor(value, name, device)
    if t.dim() != 1 or t.shape[0] != n:
        raise UsageError(f"{name} must be 1-D with one label per latent (N = {n}); "
                         f"got shape {tuple(t.shape)}")
    if t.is_floating_point() and not bool((t == t.round()).all()):
        raise UsageError(f"{name} must hold integer class labels")
    return t.to(torch.int64)


def _validated(z: Any, y: Any, weight: Any, predictions: Any, k: int) -> tuple[Tensor, ...]:
    """Checked inputs: z (N, d) float64, y (N,) int64, weight (C, d) or None, predictions (N,) or None."""
    z = _tensor(z, "z")
    if z.dim() != 2:
        raise UsageError(f"z must be a 2-D (N, d) array of latents; got shape {tuple(z.shape)}")
    if z.shape[0] == 0 or z.shape[1] == 0:
        raise UsageError(f"z holds no latents: shape {tuple(z.shape)} (N and d must be at least 1)")
    z = z.to(torch.float64)
    n, d = z.shape
    if not bool(torch.isfinite(z).all()):
        raise UsageError("z holds non-finite values (NaN or inf)")
    y = _labels(y, "y", n, z.device)
    classes, counts = torch.unique(y, return_counts=True)
    if classes.numel() < 2:
        raise UsageError(f"need at least 2 classes; y has {classes.numel()}")
    if bool((counts < 2).any()):
        raise UsageError(f"class {classes[counts < 2][0].item()} has a single sample; the "
                         "within-class covariance needs at least 2 per class")
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or not 1 <= k < n:
        enough = f" (the entropy's k = {k} nearest neighbours need at least {k + 1} latents)" \
            if isinstance(k, (int, np.integer)) and k >= n else ""
        raise UsageError(f"k must be an integer with 1 <= k < N = {n}; got {k!r}{enough}")
    if weight is not None:
        weight = _tensor(weight, "classifier_weight", z.device).to(torch.float64)
        if weight.dim() != 2 or weight.shape[1] != d or int(classes.min()) < 0 \
                or int(classes.max()) >= weight.shape[0]:
            raise UsageError(f"classifier_weight must be (C, d = {d}) with a row for every label "
                             f"0..{int(classes.max())}; got shape {tuple(weight.shape)}")
    if predictions is not None:
        predictions = _labels(predictions, "predictions", n, z.device)
    return z, y, weight, predictions


def latent_metrics(z: Any, y: Any, *, classifier_weight: Any = None, predictions: Any = None,
                   k: int = K_NEIGHBOURS) -> dict[str, float]:
    """Every latent metric of the paper, keyed by METRIC_NAMES.

    z: (N, d) latents; y: (N,) true integer labels (at least 2 classes, 2
    samples each); classifier_weight: (C, d) last-layer weights, row c for
    label c (NC3); predictions: (N,) predicted labels (NC4); k: neighbours
    of the entropy estimate (Table I: 20). Raises UsageError on bad input.
    """
    z, y, weight, predictions = _validated(z, y, classifier_weight, predictions, k)
    with torch.no_grad():
        stats = class_stats(z, y)
        dist = centre_distances(z, stats.means)
        out = {
            **collapse_metrics(z, stats, dist),
            **entropy_metrics(z, k, groups=stats.index),
            **neural_collapse_metrics(stats, dist, weight=weight, predictions=predictions),
            **binarity_metrics(z),
            "codebook_distinct": float(codebook_from_means(stats.means, stats.classes).distinct),
        }
    return {name: float(out[name]) for name in METRIC_NAMES}
