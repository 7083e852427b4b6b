"""Latent point collapse, section III.A and Table I: within-class covariance,
the class separation ratio R and the coefficients of variation of the norms.

Everything is grouped by the TRUE label (DESIGN.md, "Semantics to keep");
the authors' `get_collapse_metrics` groups Sigma_W by the PREDICTED label
instead, which differs only on misclassified training samples. Computed in
float64 on the device of z.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

from lpc_engine.errors import UsageError

# Eq. (8) divides by ||z - mu_p||, which is exactly 0 for a sample sitting on
# its own class centre (an exact collapse). Each sample's ratio is capped at
# R_CAP, so an exact collapse gives R = R_CAP (a finite number that JSON and
# plots accept) and a near-exact one cannot dominate the mean with 1e16s. The
# paper's largest reported R is ~360 (Table I), far below the cap. A sample
# with both distances 0 (its centre coincides with another class's) gets 1:
# the limit of other/own when the two centres are equal.
R_CAP = 1e12


@dataclass(frozen=True)
class ClassStats:
    """Per-class statistics of z (N, d) grouped by label.

    classes: (K,) the distinct labels, ascending; index: (N,) position of each
    sample's label in `classes`; counts: (K,); means: (K, d) class means mu_p;
    global_mean: (d,) mu_G over all samples; sigma_w: (d, d) within-class
    covariance; sigma_total: (d, d) covariance of all samples. All float64.
    """

    classes: Tensor
    index: Tensor
    counts: Tensor
    means: Tensor
    global_mean: Tensor
    sigma_w: Tensor
    sigma_total: Tensor

    @property
    def centred_means(self) -> Tensor:
        """(K, d) mu_p - mu_G: the M of NC2/NC3 and of Sigma_B (eq. E2)."""
        return self.means - self.global_mean


def class_stats(z: Tensor, y: Tensor) -> ClassStats:
    """Class means and covariances of z (N, d) float64 with labels y (N,) int64.

    Sigma_W is the unweighted mean over classes of each class's unbiased
    covariance (1/(n_p - 1)), as in the authors' code; for balanced classes it
    is eq. (7) times n_p/(n_p - 1). Sigma_total is the unbiased covariance of
    all samples, so tr(Sigma_W)/tr(Sigma_total) is ~1 with no class structure.
    Raises UsageError if a class has a single sample (no covariance).
    """
    classes, index, counts = torch.unique(y, return_inverse=True, return_counts=True)
    if bool((counts < 2).any()):
        lone = classes[counts < 2][0].item()
        raise UsageError(f"class {lone} has a single sample; the within-class covariance needs "
                         "at least 2 per class")
    k, d = classes.numel(), z.shape[1]
    sums = z.new_zeros(k, d).index_add_(0, index, z)
    means = sums / counts.unsqueeze(1).to(z.dtype)
    centred = z - means[index]
    weight = 1.0 / (k * (counts.to(z.dtype) - 1))  # each class's 1/(n_p - 1), averaged over K
    sigma_w = (centred * weight[index].unsqueeze(1)).T @ centred
    global_mean = z.mean(dim=0)
    spread = z - global_mean
    sigma_total = spread.T @ spread / (z.shape[0] - 1)
    return ClassStats(classes, index, counts, means, global_mean, sigma_w, sigma_total)


def centre_distances(z: Tensor, means: Tensor) -> Tensor:
    """(N, K) Euclidean distances ||z_i - mu_q||, from differences, not the
    ||a||^2 + ||b||^2 - 2ab expansion, so a sample on its centre gets exactly 0."""
    return torch.cdist(z, means, compute_mode="donot_use_mm_for_euclid_dist")


def separation_ratio(dist: Tensor, index: Tensor) -> float:
    """Eq. (8) averaged over samples: mean_i min_{q != p} ||z_i - mu_q|| / ||z_i - mu_p||.

    dist: (N, K) from `centre_distances`; index: (N,) own-class column p.
    Each ratio is capped at R_CAP (see there); scale-free.
    """
    own = dist.gather(1, index.unsqueeze(1)).squeeze(1)
    other = dist.scatter(1, index.unsqueeze(1), math.inf).amin(dim=1)
    at_centre = torch.where(other > 0, own.new_tensor(R_CAP), own.new_tensor(1.0))
    ratio = torch.where(own > 0, other / own, at_centre)
    return float(ratio.clamp_max(R_CAP).mean())


def sigma_w_mean(stats: ClassStats) -> float:
    """Table I's Sigma_W: the mean of all d*d entries of Sigma_W (off-diagonal
    included), as the authors report it. Scales as c^2 under z -> c z."""
    return float(stats.sigma_w.mean())


def sigma_w_trace_ratio(stats: ClassStats) -> float:
    """tr(Sigma_W) / tr(Sigma_total): the scale-free companion of Sigma_W
    (0 for an exact collapse; NaN when all samples coincide)."""
    total = float(stats.sigma_total.trace())
    return float(stats.sigma_w.trace()) / total if total > 0 else math.nan


def _cov(values: Tensor) -> float:
    """std / mean (ddof 0, as np.std); NaN when the mean is 0."""
    mean = float(values.mean())
    return float(values.std(correction=0)) / mean if mean > 0 else math.nan


def norm_metrics(z: Tensor) -> dict[str, float]:
    """Norm statistics of z (N, d).

    norm_mean: mean ||z_i||; norm_cov: std/mean of ||z_i|| over samples, Table I's
    "coefficient of variation of the latent-norm distribution"; abs_cov: std/mean
    of |z_ij| over all entries, Table IV's last column ("the coefficient of
    variation for the absolute values of the latent representations evaluated
    for all dimensions and samples", appendix D; its caption's "norm" wording
    is the Table I quantity, the text and the authors' code use |z_ij|).
    """
    norms = torch.linalg.vector_norm(z, dim=1)
    return {"norm_mean": float(norms.mean()), "norm_cov": _cov(norms), "abs_cov": _cov(z.abs())}


def collapse_metrics(z: Tensor, stats: ClassStats, dist: Tensor | None = None) -> dict[str, float]:
    """Table I's metrics but the entropy: sigma_w, sigma_w_trace_ratio,
    separation_ratio, norm_mean, norm_cov, abs_cov. z: (N, d) float64;
    dist: (N, K) centre distances if already computed."""
    dist = centre_distances(z, stats.means) if dist is None else dist
    return {
        "sigma_w": sigma_w_mean(stats),
        "sigma_w_trace_ratio": sigma_w_trace_ratio(stats),
        "separation_ratio": separation_ratio(dist, stats.index),
        **norm_metrics(z),
    }
