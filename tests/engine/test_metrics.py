"""Latent metrics (Table I, appendix E, the codebook) on cases with known answers."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy.special import digamma, gammaln

from lpc_engine.errors import UsageError
from lpc_engine.metrics import (EPS_FLOOR_REL, METRIC_NAMES, R_CAP, class_codebook, class_stats,
                                kl_entropy, latent_metrics)
from lpc_engine.metrics.collapse import centre_distances, collapse_metrics, separation_ratio
from lpc_engine.metrics import entropy, knn_select
from lpc_engine.metrics.entropy import MARGIN, knn_sq_distances
from lpc_engine.metrics.knn_select import GROUP, SUPER, make_columns, nearest, symmetric_minima
from lpc_engine.metrics.neural_collapse import ncc_mismatch, neural_collapse_metrics


def _t(a) -> torch.Tensor:
    return torch.as_tensor(np.asarray(a, dtype=np.float64))


def _labels(a) -> torch.Tensor:
    return torch.as_tensor(np.asarray(a, dtype=np.int64))


def _collapsed(n_per_class: int = 40) -> tuple[np.ndarray, np.ndarray]:
    """Three classes, each on one point with dyadic coordinates (means are exact)."""
    points = np.array([[1.0, -2.0, 0.5, 3.0], [-1.5, 1.0, 2.0, -0.25], [0.75, 0.5, -3.0, 1.0]])
    y = np.repeat(np.arange(3), n_per_class)
    return points[y], y


def _simplex_etf(k: int, d: int, seed: int = 0) -> np.ndarray:
    """(k, d) simplex equiangular tight frame, randomly rotated: unit norms, cosines -1/(k-1)."""
    m = np.sqrt(k / (k - 1)) * (np.eye(k) - np.ones((k, k)) / k)
    q, _ = np.linalg.qr(np.random.default_rng(seed).standard_normal((d, d)))
    return np.pad(m, ((0, 0), (0, d - k))) @ q.T


# ---- exact collapse ----


def test_exact_collapse_gives_the_documented_limits() -> None:
    z, y = _collapsed()
    m = latent_metrics(z, y, k=5)
    assert m["sigma_w"] == 0.0 and m["sigma_w_trace_ratio"] == 0.0
    assert m["separation_ratio"] == R_CAP
    assert m["nc1"] == 0.0 and m["nc1_per_dim"] == 0.0
    # Every eps_i is 0 and floored at EPS_FLOOR_REL * scale (module docstring of entropy.py).
    n, d, k = z.shape[0], z.shape[1], 5
    base = (digamma(n) - digamma(k) + d / 2 * np.log(np.pi) - gammaln(d / 2 + 1)) / d
    scale = np.sqrt(z.var(axis=0).mean())
    assert m["entropy_per_dim"] == pytest.approx(base + np.log(EPS_FLOOR_REL * scale), rel=1e-12)
    std_scale = np.sqrt((((z - z.mean(0)) / z.std(0)) ** 2).mean())
    assert m["entropy_per_dim_standardized"] == pytest.approx(base + np.log(EPS_FLOOR_REL * std_scale),
                                                              rel=1e-12)
    assert kl_entropy(_t(z), 5).floored == 1.0


def test_all_points_identical_entropy_is_minus_infinity() -> None:
    estimate = kl_entropy(torch.ones(10, 3), 2)
    assert estimate.per_dim == -math.inf and estimate.floored == 1.0


# ---- separation ratio R, eq. (8) ----


def test_separation_ratio_by_hand_two_classes_1d() -> None:
    # A = {0, 3} (mean 1.5), B = {10, 14} (mean 12):
    # 12/1.5 = 8, 9/1.5 = 6, 8.5/2 = 4.25, 12.5/2 = 6.25 -> mean 6.125.
    z, y = _t([[0.0], [3.0], [10.0], [14.0]]), _labels([0, 0, 1, 1])
    stats = class_stats(z, y)
    assert separation_ratio(centre_distances(z, stats.means), stats.index) == pytest.approx(6.125, rel=1e-15)


def test_separation_ratio_zero_over_zero_is_one() -> None:
    # Both class means are 0; the sample at 0 has own = other = 0 -> 1; the rest are equidistant -> 1.
    z, y = _t([[-1.0], [0.0], [1.0], [-2.0], [2.0]]), _labels([0, 0, 0, 1, 1])
    stats = class_stats(z, y)
    assert separation_ratio(centre_distances(z, stats.means), stats.index) == 1.0


def test_separation_ratio_caps_each_sample() -> None:
    # Sample 1 sits on its class mean (own = 0 -> R_CAP); samples 0, 2 give 10/1 = 10 and 12/1 = 12 ...
    z, y = _t([[-1.0], [0.0], [1.0], [11.0], [11.0]]), _labels([0, 0, 0, 1, 1])
    stats = class_stats(z, y)
    # ... and class 1 is exactly collapsed at 11 (own = 0 -> R_CAP twice).
    expected = (12.0 + R_CAP + 10.0 + 2 * R_CAP) / 5
    assert separation_ratio(centre_distances(z, stats.means), stats.index) == pytest.approx(expected)


# ---- Sigma_W ----


def test_sigma_w_by_hand() -> None:
    # Class 0: (0,0), (2,2) -> unbiased cov [[2,2],[2,2]]; class 1: (0,0), (0,4) -> [[0,0],[0,8]].
    # Sigma_W = their mean [[1,1],[1,5]]: mean of entries 2, trace 6.
    # All four points: tr(Sigma_total) = (3 + 11) / 3 -> trace ratio 6 / (14/3) = 9/7.
    z, y = _t([[0, 0], [2, 2], [0, 0], [0, 4]]), _labels([0, 0, 1, 1])
    stats = class_stats(z, y)
    torch.testing.assert_close(stats.sigma_w, _t([[1, 1], [1, 5]]))
    m = collapse_metrics(z, stats)
    assert m["sigma_w"] == pytest.approx(2.0) and m["sigma_w_trace_ratio"] == pytest.approx(9 / 7)


def test_norm_and_abs_coefficients_of_variation_by_hand() -> None:
    # Norms 5, 5, 10, 10 -> mean 7.5, std 2.5; |z_ij| = 3,4,4,3,6,8,8,6 -> mean 5.25, std sqrt(3.6875).
    z, y = _t([[3, 4], [4, 3], [6, 8], [8, 6]]), _labels([0, 0, 1, 1])
    m = collapse_metrics(z, class_stats(z, y))
    assert m["norm_mean"] == pytest.approx(7.5) and m["norm_cov"] == pytest.approx(2.5 / 7.5)
    assert m["abs_cov"] == pytest.approx(math.sqrt(3.6875) / 5.25)


# ---- neural collapse ----


def test_simplex_etf_means_give_zero_nc2_and_nc3() -> None:
    k, d = 5, 8
    means = 3.0 * _simplex_etf(k, d)
    rng = np.random.default_rng(1)
    noise = rng.standard_normal((k, 10, d)) * 0.1
    z = (means[:, None, :] + np.concatenate([noise, -noise], axis=1)).reshape(-1, d)  # exact class means
    y = np.repeat(np.arange(k), 20)
    m = latent_metrics(z, y, classifier_weight=0.5 * means, predictions=y, k=3)
    for name in ("equinorm", "equiangularity", "max_angle", "max_angle_pair_mean", "self_duality",
                 "ncc_mismatch"):
        assert abs(m[name]) < 1e-12, name
    assert m["nc1"] > 0 and m["nc1_per_dim"] == pytest.approx(m["nc1"] / d)


def test_nc2_angles_papyan_and_the_authors_on_a_hand_checked_case() -> None:
    # Centred class means (1, 0), (0, 1), (-1, -1): cosines 0, -1/sqrt2, -1/sqrt2;
    # with K = 3 the shifted |cos + 1/2| are 1/2, 1/sqrt2 - 1/2, 1/sqrt2 - 1/2.
    means = np.array([[1.0, 0.0], [0.0, 1.0], [-1.0, -1.0]])
    z = np.concatenate([means + 0.1, means - 0.1])  # each class: two points around its mean
    y = np.tile(np.arange(3), 2)
    stats = class_stats(_t(z), _labels(y))
    m = neural_collapse_metrics(stats, centre_distances(_t(z), stats.means))
    shifted = 1 / math.sqrt(2) - 0.5
    # Papyan et al.: per class the max over the others (1/2, 1/2, shifted), then the mean.
    assert m["max_angle"] == pytest.approx((0.5 + 0.5 + shifted) / 3, rel=1e-12)
    # The authors' code: the mean over the three pairs.
    assert m["max_angle_pair_mean"] == pytest.approx((0.5 + 2 * shifted) / 3, rel=1e-12)


def test_nc1_matches_the_pinv_formula() -> None:
    rng = np.random.default_rng(2)
    z = rng.standard_normal((300, 6)) + np.repeat(rng.standard_normal((3, 6)) * 3, 100, axis=0)
    y = np.repeat(np.arange(3), 100)
    mu = np.stack([z[y == c].mean(0) for c in range(3)])
    sigma_w = np.mean([np.cov(z[y == c].T) for c in range(3)], axis=0)
    centred = mu - z.mean(0)
    expected = np.trace(sigma_w @ np.linalg.pinv(centred.T @ centred / 3)) / 3
    stats = class_stats(_t(z), _labels(y))
    m = neural_collapse_metrics(stats, centre_distances(_t(z), stats.means))
    assert m["nc1"] == pytest.approx(expected, rel=1e-9)
    assert math.isnan(m["self_duality"]) and math.isnan(m["ncc_mismatch"])


def test_ncc_mismatch_counts_disagreements() -> None:
    z, y = _t([[0.0], [1.0], [9.0], [10.0]]), _labels([0, 0, 1, 1])
    stats = class_stats(z, y)
    dist = centre_distances(z, stats.means)  # nearest centres: 0, 0, 1, 1
    assert ncc_mismatch(dist, stats.classes, _labels([0, 1, 1, 0])) == 0.5


def test_classifier_rows_follow_the_labels() -> None:
    # Labels 3 and 7 use rows 3 and 7 of W; the other rows are ignored.
    z = np.array([[1.0, 0.0], [1.0, 0.0], [-1.0, 0.0], [-1.0, 0.0]])
    y = np.array([3, 3, 7, 7])
    w = np.full((8, 2), 5.0)
    w[3], w[7] = [2.0, 0.0], [-2.0, 0.0]
    assert latent_metrics(z, y, classifier_weight=w, k=1)["self_duality"] == pytest.approx(0.0, abs=1e-15)


# ---- entropy ----


def test_kl_entropy_of_a_gaussian_is_close_to_analytic() -> None:
    rng = np.random.default_rng(3)
    z = rng.standard_normal((8000, 2)) * np.array([2.0, 1.0])
    expected_std = 0.5 * np.log(2 * np.pi * np.e)
    m = latent_metrics(z, rng.integers(0, 2, 8000))
    assert m["entropy_per_dim_standardized"] == pytest.approx(expected_std, abs=0.03)
    assert m["entropy_per_dim"] == pytest.approx(expected_std + 0.5 * np.log(2.0), abs=0.03)


def _brute_kth(z: np.ndarray, k: int) -> np.ndarray:
    """Squared distance to the k-th nearest other point, by differences (index 0 is the point itself)."""
    return np.concatenate([np.sort(((rows[:, None, :] - z[None]) ** 2).sum(-1), axis=1)[:, k]
                           for rows in np.array_split(z, 20)])


@pytest.mark.parametrize("grouped", [False, True])
def test_knn_is_exact_on_collapsed_near_collapsed_and_spread_points(grouped: bool) -> None:
    rng = np.random.default_rng(4)
    n = 3 * GROUP * (20 + 1 + MARGIN) // 2  # enough columns for the group-minimum path
    centres = rng.choice([-1.0, 1.0], size=(3, 16)) * 100
    y = rng.integers(0, 3, n)
    spread = np.array([0.0, 1e-5, 1.0])  # exact duplicates, float32-invisible spread, normal
    z = centres[y] + spread[y, None] * rng.standard_normal((n, 16))
    got = knn_sq_distances(_t(z), 20, _labels(y) if grouped else None).numpy()
    np.testing.assert_allclose(got, _brute_kth(z, 20), rtol=1e-9, atol=0)


def _overlapping_classes(n: int, d: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Three classes whose noise (1) spans the distance between their centres (+-1 per node)."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 3, n)
    return rng.choice([-1.0, 1.0], size=(3, d))[y] + rng.standard_normal((n, d)), y


@pytest.mark.parametrize("grouped", [False, True])
def test_knn_ranking_all_distances_at_once_is_exact(grouped: bool, monkeypatch) -> None:
    z, y = _overlapping_classes(3 * GROUP * (20 + 1 + MARGIN) // 2, 8, seed=8)
    shared = []
    monkeypatch.setattr(entropy, "symmetric_minima",
                        lambda *a: shared.append(1) or symmetric_minima(*a))
    got = knn_sq_distances(_t(z), 20, _labels(y) if grouped else None).numpy()
    assert shared == [1]  # nothing to prune, nothing tight: one ranking serves every query
    np.testing.assert_allclose(got, _brute_kth(z, 20), rtol=1e-9, atol=0)


@pytest.mark.parametrize("case, shares", [("overlapping", True), ("separated", False), ("tight", False),
                                          ("too large", False)])
def test_knn_ranks_all_distances_at_once_only_where_that_pays(case: str, shares: bool, monkeypatch) -> None:
    z, y = _overlapping_classes(3000, 8, seed=9)
    if case == "separated":  # class pruning skips the other classes
        z = z + 100 * np.eye(3, 8)[y]
    elif case == "tight":  # a collapsed class needs its own frame
        z[y == 0] = z[y == 0].mean(axis=0) + 1e-6 * z[y == 0]
    elif case == "too large":  # the shared minima would take more memory than allowed
        monkeypatch.setattr(entropy, "SHARED_MAX_BYTES", 3000 ** 2 // GROUP * 4 - 1)
    calls = []
    monkeypatch.setattr(entropy, "symmetric_minima", lambda *a: calls.append(1) or symmetric_minima(*a))
    got = knn_sq_distances(_t(z), 20, _labels(y))
    assert calls == ([1] if shares else [])
    np.testing.assert_allclose(got.numpy(), _brute_kth(z, 20), rtol=1e-9, atol=0)


def test_symmetric_minima_are_every_points_group_minima(monkeypatch) -> None:
    # Small tiles, so the 1000 points (not a whole number of groups) span many
    # tiles in both directions, and both readings of a tile are needed.
    monkeypatch.setattr(knn_select, "TILE_ROWS", 128)
    monkeypatch.setattr(knn_select, "TILE_COLS", 256)
    pts = torch.randn(1000, 3, generator=torch.Generator().manual_seed(1), dtype=torch.float64)
    sq, one = pts.square().sum(1, keepdim=True), torch.ones(1000, 1, dtype=torch.float64)
    cols = make_columns(torch.cat([-2 * pts, one, sq], dim=1), torch.arange(1000))
    got = symmetric_minima(torch.cat([pts, sq, one], dim=1), cols)
    distances = torch.cdist(pts, pts).square()
    padded = torch.cat([distances, distances.new_full((1000, -1000 % GROUP), math.inf)], dim=1)
    assert got.shape == (1000 + (-1000 % GROUP), padded.shape[1] // GROUP)
    torch.testing.assert_close(got[:1000], padded.view(1000, -1, GROUP).amin(dim=2), rtol=0, atol=1e-12)


@pytest.mark.parametrize("queries", ["many", "uneven"])
def test_the_ranking_finds_the_kk_smallest_values_and_bounds_the_rest(queries: str) -> None:
    # Enough groups for both rounds of the group choice. 1000 queries spread
    # over every group recompute them in one padded matmul each; 300 identical
    # ones all pick the same groups, which splits those into CAP-row matmuls.
    g = torch.Generator().manual_seed(0)
    n, kk = GROUP * SUPER * 33, 29
    pts = torch.randn(n, 5, generator=g, dtype=torch.float64)
    aug = torch.cat([-2 * pts, pts.square().sum(1, keepdim=True)], dim=1)
    q = pts[:1000] if queries == "many" else torch.cat([pts[:300], pts[7:8].expand(300, 5)])
    qa = torch.cat([q, torch.ones(q.shape[0], 1, dtype=torch.float64)], dim=1)
    points, bound, _ = nearest(qa, make_columns(aug, torch.arange(n)), kk)
    ref = (qa @ aug.T).topk(kk, dim=1, largest=False)
    assert torch.equal(points.sort(dim=1).values, ref.indices.sort(dim=1).values)
    torch.testing.assert_close(bound, ref.values[:, -1], rtol=1e-12, atol=1e-12)


def test_entropy_floor_only_moves_duplicates() -> None:
    z = np.concatenate([np.zeros((30, 2)), np.random.default_rng(5).standard_normal((30, 2)) + 10])
    estimate = kl_entropy(_t(z), 3)
    assert estimate.floored == pytest.approx(0.5)


# ---- codebook (section II.A) ----


def test_codebook_reports_classes_sharing_a_vertex() -> None:
    z = np.array([[2, 1, -1], [1, 3, -2],        # label 3: (+, +, -)
                  [5, 5, -5], [4, 6, -4],        # label 5: (+, +, -), same vertex
                  [-1, 2, 1], [-2, 1, 3]], float)  # label 9: (-, +, +)
    cb = class_codebook(_t(z), _labels([3, 3, 5, 5, 9, 9]))
    assert cb.codes.dtype == torch.int8
    assert cb.codes.tolist() == [[1, 1, -1], [1, 1, -1], [-1, 1, 1]]
    assert cb.classes == (3, 5, 9) and cb.distinct == 2 and cb.shared == [(3, 5)]
    assert latent_metrics(z, [3, 3, 5, 5, 9, 9], k=2)["codebook_distinct"] == 2.0


# ---- the whole suite ----


def test_every_metric_is_a_float_and_numpy_equals_torch() -> None:
    rng = np.random.default_rng(6)
    y = np.repeat(np.arange(4), 50)
    z = (rng.standard_normal((4, 6))[y] + 0.3 * rng.standard_normal((200, 6))).astype(np.float32)
    from_numpy = latent_metrics(z, y, k=5)
    from_torch = latent_metrics(torch.from_numpy(z), torch.from_numpy(y), k=5)
    assert tuple(from_numpy) == METRIC_NAMES
    assert all(type(v) is float for v in from_numpy.values())
    assert math.isnan(from_numpy["self_duality"]) and math.isnan(from_numpy["ncc_mismatch"])
    assert from_numpy == pytest.approx(from_torch, nan_ok=True)


def test_scale_invariance() -> None:
    rng = np.random.default_rng(7)
    y = np.repeat(np.arange(3), 60)
    z = rng.standard_normal((3, 5))[y] * 2 + rng.standard_normal((180, 5))
    w = rng.standard_normal((3, 5))
    base = latent_metrics(z, y, classifier_weight=w, predictions=y, k=4)
    for c in (1e-3, 250.0):
        scaled = latent_metrics(c * z, y, classifier_weight=w, predictions=y, k=4)
        for name in ("sigma_w_trace_ratio", "separation_ratio", "norm_cov", "abs_cov", "nc1",
                     "nc1_per_dim", "equinorm", "equiangularity", "max_angle", "max_angle_pair_mean",
                     "self_duality",
                     "gmm_score_mean", "gmm_score_min", "gmm_std_mean", "gmm_peak_distance_mean",
                     "gmm_peak_distance_min", "entropy_per_dim_standardized", "codebook_distinct"):
            assert scaled[name] == pytest.approx(base[name], rel=1e-7, abs=1e-12), name
        assert scaled["sigma_w"] == pytest.approx(c * c * base["sigma_w"], rel=1e-9)
        assert scaled["norm_mean"] == pytest.approx(c * base["norm_mean"], rel=1e-12)
        assert scaled["entropy_per_dim"] == pytest.approx(base["entropy_per_dim"] + math.log(c), rel=1e-9)


# ---- input validation ----


@pytest.mark.parametrize("z, y, kwargs, message", [
    (np.zeros(10), np.zeros(10), {}, "2-D"),
    (np.zeros((10, 2)), np.zeros(9), {}, "one label per latent"),
    (np.array([[0.0, np.nan]] * 4), [0, 0, 1, 1], {}, "non-finite"),
    (np.array([[0.0, np.inf]] * 4), [0, 0, 1, 1], {}, "non-finite"),
    (np.random.default_rng(0).random((6, 2)), [1] * 6, {}, "at least 2 classes"),
    (np.random.default_rng(0).random((5, 2)), [0, 0, 0, 0, 1], {}, "single sample"),
    (np.zeros((0, 3)), np.zeros(0), {}, "holds no latents"),
    (np.random.default_rng(0).random((6, 2)), [0, 0, 0, 1, 1, 1], {"k": 6}, "need at least 7 latents"),
    (np.random.default_rng(0).random((6, 2)), [0, 0, 0, 1, 1, 1], {"k": 0}, "1 <= k < N"),
    (np.random.default_rng(0).random((6, 2)), [0.5, 0, 0, 1, 1, 1], {"k": 2}, "integer class labels"),
    (np.random.default_rng(0).random((6, 2)), [0, 0, 0, 1, 1, 1],
     {"k": 2, "classifier_weight": np.zeros((2, 3))}, "classifier_weight"),
    (np.random.default_rng(0).random((6, 2)), [0, 0, 0, 4, 4, 4],
     {"k": 2, "classifier_weight": np.zeros((2, 2))}, "classifier_weight"),
    (np.random.default_rng(0).random((6, 2)), [0, 0, 0, 1, 1, 1],
     {"k": 2, "predictions": [0, 1]}, "predictions"),
    (np.array([["a", "b"]] * 4), [0, 0, 1, 1], {}, "z"),
])
def test_bad_input_raises_a_one_line_usage_error(z, y, kwargs, message) -> None:
    with pytest.raises(UsageError, match=message) as info:
        latent_metrics(z, y, **kwargs)
    assert "\n" not in str(info.value)
