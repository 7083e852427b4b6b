"""Binarity of the latent nodes (appendix D): a 2-component Gaussian mixture per node.

The paper fits, for every node i of the penultimate layer, a bimodal 1-D
Gaussian mixture N(mu_i^(1,2), sigma_i^(1,2)^2) to the node's values over the
training set and reports the mean log-likelihood (eq. D1), the mean standard
deviation (eq. D2) and the peak distance |mu2 - mu1| / ((sigma1 + sigma2)/2)
(eq. D3); Table IV gives their mean and minimum over nodes. As in the authors'
code each node is first standardised (zero mean, unit variance), so the scores
and peak distances do not depend on the scale of z.

The authors fit one scikit-learn `GaussianMixture` per node (n_init = 1,
k-means start, tol 1e-3). Here one vectorised EM fits all nodes from several
starts each (run on a subsample first, the plausible winners refined on all
rows) and keeps the best likelihood: same model and variance floor, tighter
tolerance, more starts, so the scores are at least scikit-learn's
(bench/metrics_bench.py compares them).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

from lpc_engine.errors import UsageError
from lpc_engine.metrics.mixture_em import (EPS10, REG_COVAR, Fits, coefficients, e_step, heavier_first, run_em,
                         with_moments)

# EM stops when the mean log-likelihood per sample gains less than this in an
# iteration (scikit-learn: 1e-3, which stops up to ~2e-3 short on unimodal nodes).
TOL = 1e-5
MAX_ITER = 500
N_INIT = 4  # starts per node, see `_starts`
# A node counts as binary (the TUI's "k of d nodes binary") when its two
# peaks lie at least this many mean peak widths apart (eq. D3). Table IV,
# CIFAR-10: LinPen's mean is 2.2, while LPC's worst node over all runs is 9.2.
BINARY_PEAK_DISTANCE = 4.0
SUBSAMPLE = 8192  # rows every start runs on first (`_screen`); N <= 2 * SUBSAMPLE: all rows
NODE_BATCH = 128  # nodes fitted together: bounds memory at ~0.3 GB for N = 50,000


@dataclass(frozen=True)
class NodeMixtures:
    """The kept (best-likelihood) 2-component fit of every node, standardised units.

    score: (d,) mean log-likelihood per sample (the summand of eq. D1).
    weights, means, stds: (d, 2); stds include the REG_COVAR floor. Component 0
    is the heavier one. n_iter: (d,) EM iterations of the node; converged: (d,) bool.
    """

    score: Tensor
    weights: Tensor
    means: Tensor
    stds: Tensor
    n_iter: Tensor
    converged: Tensor

    @property
    def peak_distance(self) -> Tensor:
        """(d,) |mu2 - mu1| / ((sigma1 + sigma2) / 2), the summand of eq. D3."""
        return (self.means[:, 1] - self.means[:, 0]).abs() / self.stds.mean(dim=1)


def standardize(z: Tensor) -> Tensor:
    """(N, d) -> (N, d) float64, each column at zero mean and unit std (ddof 0).

    A constant column keeps scale 1 (it becomes all zeros), as scikit-learn's
    StandardScaler does, instead of dividing by zero.
    """
    z = z.to(torch.float64)
    std = z.std(dim=0, correction=0)
    return (z - z.mean(dim=0)) / torch.where(std > 0, std, torch.ones_like(std))


def _split_starts(xs: Tensor, draws: int, gen: torch.Generator) -> tuple[Tensor, Tensor, Tensor]:
    """(d, 2 + draws, 2) weights, means, variances of hard splits of the sorted xs (d, n):
    the global 2-means split, the median split, then k-means++ draws.

    In 1-D every 2-centre assignment is a split of the sorted values; the exact
    2-means optimum is the split with the least within-cluster sum of squares,
    found from prefix sums (scikit-learn's k-means init aims at the same).
    """
    d, n = xs.shape
    zero = xs.new_zeros(d, 1)
    p1, p2 = (torch.cat([zero, v.cumsum(dim=1)], dim=1) for v in (xs, xs * xs))  # (d, n + 1)
    left = torch.arange(1, n, device=xs.device, dtype=xs.dtype)
    sse = (p2[:, 1:n] - p1[:, 1:n] ** 2 / left) + (
        (p2[:, -1:] - p2[:, 1:n]) - (p1[:, -1:] - p1[:, 1:n]) ** 2 / (n - left))
    splits = [sse.argmin(dim=1) + 1, torch.full((d,), n // 2, device=xs.device)]
    for _ in range(draws):
        first = xs.gather(1, torch.randint(n, (d, 1), generator=gen, device=xs.device))
        weight = (xs - first) ** 2 + 1e-300  # all-equal node: uniform draw
        second = xs.gather(1, torch.multinomial(weight, 1, generator=gen))
        splits.append(torch.searchsorted(xs, (first + second) / 2).squeeze(1))
    j = torch.stack(splits, dim=1).clamp(1, n - 1)  # (d, I) counts on the left
    s1, s2 = (torch.stack([p.gather(1, j), p[:, -1:] - p.gather(1, j)], dim=-1) for p in (p1, p2))
    nk = torch.stack([j, n - j], dim=-1).to(xs.dtype) + EPS10
    mu = s1 / nk
    return nk / n, mu, (s2 / nk - mu * mu).clamp_min(0) + REG_COVAR


def _mode_start(xs: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """(d, 1, 2) params: a narrow component on the densest 5% window, a broad one on all.

    Splits cannot start the "spike + background" optimum of partly collapsed
    nodes (a class collapsed on one value among spread classes), which k-means
    initialisations miss (on the bench's partly collapsed data: 0.90 against -0.74).
    """
    n = xs.shape[1]
    m = max(1, n // 20)
    width, start = (xs[:, m:] - xs[:, :-m]).min(dim=1)
    centre = (xs.gather(1, start[:, None]) + xs.gather(1, start[:, None] + m))[:, 0] / 2
    mu = torch.stack([xs.mean(dim=1), centre], dim=-1)
    var = torch.stack([xs.var(dim=1, correction=0), (width / 2) ** 2], dim=-1) + REG_COVAR
    return torch.full_like(mu, 0.5).unsqueeze(1), mu.unsqueeze(1), var.unsqueeze(1)


def _starts(x: Tensor, n_init: int, gen: torch.Generator) -> tuple[Tensor, ...]:
    """Weights, means, variances (d * n_init, 2) of each node's starts, node-major; x: (d, n).

    In order: 2-means split, median split, narrow-on-densest-window, k-means++ draws.
    """
    xs = torch.sort(x, dim=1).values
    draws = max(n_init - 3, 0)
    params = (torch.cat(pair, dim=1) for pair in zip(_split_starts(xs, draws, gen), _mode_start(xs)))
    order = ([0, 1, 2 + draws] + list(range(2, 2 + draws)))[:n_init]
    return heavier_first(*(p[:, order].flatten(0, 1) for p in params))


def _screen(xs: Tensor, fits: Fits, n_init: int) -> Tensor:
    """(d * n_init,) bool over the subsample fits (node-major) of xs (d, n): those worth refining.

    A fit is dropped when its mean log-likelihood on the subsample is below its
    node's best by more than 4 standard errors of the per-sample difference
    plus 1e-3 (it would win on the full data with probability ~3e-5), or when
    a better fit of the same node has the same parameters (same basin).
    """
    d, n = xs.shape
    a, b, c = (v.view(d, n_init, 2, 1) for v in coefficients(fits.w, fits.mu, fits.var))
    x = xs.view(d, 1, 1, n)
    per = torch.logsumexp((a * x + b) * x + c, dim=2)  # (d, I, n) log-likelihood of each sample
    mean = per.mean(dim=2)
    best = mean.argmax(dim=1, keepdim=True)  # the first on ties
    se = (per - per.gather(1, best.unsqueeze(2).expand(-1, 1, n))).std(dim=2) / math.sqrt(n)
    keep = mean >= mean.gather(1, best) - (4 * se + 1e-3)
    shape = torch.cat([fits.w, fits.mu, 0.5 * fits.var.log()], dim=1).view(d, n_init, 6)
    same = (shape.unsqueeze(2) - shape.unsqueeze(1)).abs().amax(dim=3) < 0.05  # (d, I, I)
    rank = torch.arange(n_init, device=xs.device)
    beats = (mean.unsqueeze(1) > mean.unsqueeze(2)) | (
        (mean.unsqueeze(1) == mean.unsqueeze(2)) & (rank < rank.unsqueeze(1)))  # [., i, j]: j beats i
    return (keep & ~(same & beats & keep.unsqueeze(1)).any(dim=2)).flatten()


def _first_best(node: Tensor, ll: Tensor, size: int) -> Tensor:
    """(size,) index of the highest-ll row of each node (first on ties); node, ll: (R,)."""
    top = torch.full((size,), -math.inf, dtype=ll.dtype, device=ll.device).scatter_reduce(0, node, ll, "amax")
    rows = torch.arange(ll.numel(), device=ll.device)
    none = ll.numel()
    return torch.full((size,), none, device=ll.device).scatter_reduce(
        0, node, torch.where(ll == top[node], rows, none), "amin")


def _fit_nodes(x: Tensor, n_init: int, tol: float, max_iter: int, gen: torch.Generator,
               subsample: int) -> tuple[Tensor, ...]:
    """score, weights, means, stds, n_iter, converged of the standardised nodes x (d, N)."""
    d, n = x.shape
    sub = n > 2 * subsample
    xs = x[:, torch.randperm(n, generator=gen, device=x.device)[:subsample]] if sub else x
    node = torch.arange(d, device=x.device).repeat_interleave(n_init)
    fits = run_em(xs[node], _starts(xs, n_init, gen), tol, max_iter)
    if sub:
        keep = _screen(xs, fits, n_init)
        node, fits = node[keep], Fits(*(v[keep] for v in fits))
        fits = run_em(x[node], (fits.w, fits.mu, fits.var), tol, max_iter)
    fits = Fits(*(v[_first_best(node, fits.ll, d)] for v in fits))
    # Score at the kept parameters (the EM's ll lags them by one M-step).
    x3 = with_moments(x)
    params = (p.unsqueeze(1) for p in (fits.w, fits.mu, fits.var))
    _, score = e_step(x.unsqueeze(1), x3, x3.sum(dim=1, keepdim=True), *coefficients(*params))
    return score[:, 0], fits.w, fits.mu, fits.var.sqrt(), fits.n_iter, fits.converged


def fit_node_mixtures(z: Tensor, *, n_init: int = N_INIT, tol: float = TOL,
                      max_iter: int = MAX_ITER, seed: int = 0,
                      subsample: int = SUBSAMPLE) -> NodeMixtures:
    """Fit a 2-component Gaussian mixture to every standardised column of z at once.

    z: (N, d) latents, N >= 2 (any float dtype and device; computed in float64).
    Each node starts from n_init initialisations (see `_starts`; n_init = 1 is
    the authors' single k-means start). When N > 2 * subsample they are first
    run to convergence on `subsample` random rows, and only the fits that
    could still be the best (`_screen`) are refined on all N rows. EM stops
    when the mean log-likelihood gains less than `tol`; the fit with the best
    likelihood on all rows is kept. Deterministic for a seed.
    """
    if z.dim() != 2 or z.shape[0] < 2:
        raise UsageError(f"a mixture per node needs z of shape (N >= 2, d); got {tuple(z.shape)}")
    x = standardize(z).T.contiguous()  # (d, N)
    gen = torch.Generator(device=x.device).manual_seed(seed)
    parts = [_fit_nodes(x[lo:lo + NODE_BATCH], n_init, tol, max_iter, gen, subsample)
             for lo in range(0, x.shape[0], NODE_BATCH)]
    return NodeMixtures(*(torch.cat(column) for column in zip(*parts)))


def binarity_metrics(z: Tensor, *, n_init: int = N_INIT, tol: float = TOL, seed: int = 0) -> dict[str, float]:
    """Appendix D / Table IV summaries over the d nodes of z (N, d).

    gmm_score_mean: eq. D1 (mean over nodes of the mean log-likelihood per
    sample); gmm_score_min: the worst node; gmm_std_mean: eq. D2;
    gmm_peak_distance_mean: eq. D3; gmm_peak_distance_min: the worst node.
    All in standardised units, hence invariant under z -> c z. n_init = 1,
    tol = 1e-3 is the authors' setting (one k-means start, scikit-learn's
    tolerance); the default keeps the best of several starts, run further.
    """
    fit = fit_node_mixtures(z, n_init=n_init, tol=tol, seed=seed)
    peaks = fit.peak_distance
    return {
        "gmm_score_mean": float(fit.score.mean()),
        "gmm_score_min": float(fit.score.min()),
        "gmm_std_mean": float(fit.stds.mean()),
        "gmm_peak_distance_mean": float(peaks.mean()),
        "gmm_peak_distance_min": float(peaks.min()),
    }
