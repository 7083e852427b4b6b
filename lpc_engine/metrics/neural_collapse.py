"""Neural collapse NC1-NC4 (appendix E; Papyan, Han & Donoho 2020, Fig. 5 here).

All class statistics come from `collapse.class_stats` (true labels). With
M = the (K, d) centred class means mu_p - mu_G:

- NC1: Tr(Sigma_W Sigma_B^+) / K with Sigma_B = M^T M / K (eq. E2), and the
  paper's per-dimension version divided by d (Fig. 5, top).
- NC2: equinorm = std/mean of ||M_p||; equiangularity = std of the cosines
  between distinct rows of M; max_angle = mean_p max_{q != p} |cos + 1/(K-1)|
  (Papyan et al.'s, which the paper cites); max_angle_pair_mean = the mean of
  |cos + 1/(K-1)| over the pairs p < q, what the authors' code reports as
  "maxangle" (for comparing Fig. 5 with their plots). All 0 for a simplex
  equiangular tight frame.
- NC3: || W/||W||_F - M/||M||_F ||_F^2 with W the (K, d) classifier weights.
- NC4: the fraction of samples whose nearest class centre is not the network's
  prediction.

The authors' code computes NC1 and NC2 only (on predicted labels).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from lpc_engine.metrics.collapse import ClassStats


def nc1(stats: ClassStats) -> float:
    """Tr(Sigma_W Sigma_B^+) / K (appendix E). Scale-free; 0 for an exact collapse.

    Sigma_B = M^T M / K has rank K - 1 at most, so its pseudo-inverse lives in
    the span of M's right singular vectors v_i, with eigenvalues s_i^2 / K:
    Tr(Sigma_W Sigma_B^+) = sum_i v_i^T Sigma_W v_i / (s_i^2 / K). This costs
    O(K d^2) where a d x d `pinv` costs O(d^3) (2.2 s at d = 2048). Eigenvalues
    below d * eps * the largest are dropped, the default cut of `pinv`.
    NaN when all class means coincide (Sigma_B = 0).
    """
    m = stats.centred_means
    k, d = m.shape
    _, s, vh = torch.linalg.svd(m, full_matrices=False)
    eig = s * s / k
    if not bool(eig.max() > 0):
        return math.nan
    keep = eig > d * torch.finfo(eig.dtype).eps * eig.max()
    v = vh[keep]
    return float((((v @ stats.sigma_w) * v).sum(dim=1) / eig[keep]).sum()) / k


def _cosines(m: Tensor) -> Tensor:
    """(K, K) cosines between the rows of m (NaN where a row is zero)."""
    unit = m / torch.linalg.vector_norm(m, dim=1, keepdim=True)
    return unit @ unit.T


def nc2(stats: ClassStats) -> dict[str, float]:
    """equinorm, equiangularity, max_angle, max_angle_pair_mean of the centred
    class means (NC2)."""
    m = stats.centred_means
    k = m.shape[0]
    norms = torch.linalg.vector_norm(m, dim=1)
    mean_norm = float(norms.mean())
    cos = _cosines(m)
    off = ~torch.eye(k, dtype=torch.bool, device=m.device)
    upper = torch.triu(torch.ones(k, k, dtype=torch.bool, device=m.device), diagonal=1)
    shifted = (cos + 1.0 / (k - 1)).abs().masked_fill(~off, -math.inf)
    return {
        "equinorm": float(norms.std(correction=0)) / mean_norm if mean_norm > 0 else math.nan,
        "equiangularity": float(cos[upper].std(correction=0)),
        "max_angle": float(shifted.amax(dim=1).mean()),
        "max_angle_pair_mean": float((cos[upper] + 1.0 / (k - 1)).abs().mean()),
    }


def self_duality(stats: ClassStats, weight: Tensor | None) -> float:
    """NC3: || W/||W||_F - M/||M||_F ||_F^2; weight: (C, d) classifier rows, row c
    for label c (rows of labels absent from y are ignored). NaN without weights."""
    if weight is None:
        return math.nan
    w = weight.to(stats.means)[stats.classes]
    m = stats.centred_means
    w_norm, m_norm = torch.linalg.matrix_norm(w), torch.linalg.matrix_norm(m)
    if not (w_norm > 0 and m_norm > 0):
        return math.nan
    return float(torch.linalg.matrix_norm(w / w_norm - m / m_norm) ** 2)


def ncc_mismatch(dist: Tensor, classes: Tensor, predictions: Tensor | None) -> float:
    """NC4: fraction of samples whose nearest class centre differs from the
    network's prediction. dist: (N, K) centre distances; classes: (K,) labels;
    predictions: (N,) labels or None (then NaN). Ties go to the lower label."""
    if predictions is None:
        return math.nan
    nearest = classes[dist.argmin(dim=1)]
    return float((nearest != predictions.to(nearest)).double().mean())


def neural_collapse_metrics(stats: ClassStats, dist: Tensor, *, weight: Tensor | None = None,
                            predictions: Tensor | None = None) -> dict[str, float]:
    """nc1, nc1_per_dim, equinorm, equiangularity, max_angle, max_angle_pair_mean,
    self_duality, ncc_mismatch."""
    value = nc1(stats)
    return {
        "nc1": value,
        "nc1_per_dim": value / stats.means.shape[1],
        **nc2(stats),
        "self_duality": self_duality(stats, weight),
        "ncc_mismatch": ncc_mismatch(dist, stats.classes, predictions),
    }
