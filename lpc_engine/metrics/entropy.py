"""Kozachenko-Leonenko entropy of the latents (Table I's H, k = 20, divided by d).

    H = psi(N) - psi(k) + log V_d + (d/N) sum_i log eps_i,   V_d = pi^(d/2) / Gamma(d/2 + 1)

in nats, eps_i the Euclidean distance from z_i to its k-th nearest other
sample. The authors standardise each dimension first; both the raw and the
standardised value are reported.

The k-NN search is exact and brute force on the device of z: in 64-d trees
barely prune (bench/metrics_bench.py, 50,000 x 64: scikit-learn's BallTree
needs minutes for each entropy). Per block of queries, a float32 matmul ranks
all points (knn_select.py: in cache-sized tiles, keeping only group minima,
then recomputing the few groups that can hold the k' = k + 1 + MARGIN
smallest), and those k' are re-measured exactly in float64 from differences.
A rounding-error bound on the float32 values proves, per query, that no other
point can be nearer than the refined k-th neighbour; queries it cannot prove
are redone in float64, then by exact differences to every point. Given
`groups` (class labels), a block holds one class: a tight block is recentred
before rounding to float32, so collapsed classes keep their tiny distances,
and whole classes out of reach by the triangle inequality are skipped.
Where nothing would be skipped and no block is tight (spread latents), on
the CPU, the group minima of all N^2 squared distances are taken once
instead, over half the matmul, since distance is symmetric.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

from lpc_engine.errors import UsageError
from lpc_engine.metrics.binarity import standardize
from lpc_engine.metrics.knn_select import GROUP, Columns, join, make_columns, nearest, symmetric_minima

K_NEIGHBOURS = 20  # Table I: "Kozachenko-Leonenko method (k=20)"
# Collapsed points have exact duplicates, so eps_i = 0 and log eps_i = -inf.
# Each eps_i is floored at EPS_FLOOR_REL times the data scale (the RMS per-
# dimension standard deviation of the z it runs on): an exact collapse then
# gives a finite, documented value, H/d = (psi(N) - psi(k) + log V_d)/d +
# log(EPS_FLOOR_REL * scale), and the estimate stays equivariant under
# z -> c z. On standardised data the floor is 1e-10, what the authors' code
# adds to every eps_i (here only the zeros and distances below it move).
EPS_FLOOR_REL = 1e-10
MARGIN = 4  # extra candidates refined exactly, so near-ties cannot swap the k-th (2 left 0.1% of
# spread queries unproven, and their float64 redo cost more than the margin saves)
QUERY_BLOCK = 1024  # queries ranked together (knn_select.py tiles their matmul)


@dataclass(frozen=True)
class EntropyEstimate:
    """per_dim: H/d in nats; floored: fraction of samples whose eps_i was floored."""

    per_dim: float
    floored: float


def _tf32_possible() -> bool:
    """Whether CUDA float32 matmuls may run in TF32 (10-bit mantissa); True when unsure."""
    try:
        legacy = torch.get_float32_matmul_precision() != "highest"
        return legacy or torch.backends.cuda.matmul.allow_tf32 or \
            getattr(torch.backends.cuda.matmul, "fp32_precision", "ieee") == "tf32"
    except RuntimeError:  # torch refuses when the legacy and new precision APIs were mixed
        return True


def _unit_roundoff(dtype: torch.dtype, device: torch.device) -> float:
    """Unit roundoff of a matmul in `dtype` on `device`."""
    if dtype == torch.float32 and device.type == "cuda" and _tf32_possible():
        return 2.0 ** -11
    return float(torch.finfo(dtype).eps) / 2


@dataclass(frozen=True)
class _Layout:
    """Groups as contiguous row ranges of z (sorted by group): ranges [(start, end)],
    centre (G, d) and radius (G,) (largest distance of a member from its centre)."""

    ranges: list[tuple[int, int]]
    centre: Tensor
    radius: Tensor


def _layout(z: Tensor, counts: list[int]) -> _Layout:
    ends = torch.tensor(counts).cumsum(0).tolist()
    ranges = list(zip([0] + ends[:-1], ends))
    centre = torch.stack([z[s:e].mean(dim=0) for s, e in ranges])
    radius = torch.stack([(z[s:e] - c).norm(dim=1).max() for (s, e), c in zip(ranges, centre)])
    return _Layout(ranges, centre, radius)


def _blocks(layout: _Layout, device: torch.device) -> list[tuple[int, Tensor]]:
    """(group, query rows) blocks of at most QUERY_BLOCK rows, each inside one group."""
    return [(g, q) for g, (s, e) in enumerate(layout.ranges)
            for q in torch.arange(s, e, device=device).split(QUERY_BLOCK)]


def _frame(z: Tensor, centre: Tensor, dtype: torch.dtype) -> tuple[Tensor, Tensor, Columns]:
    """z - centre in float64 (N, d), in dtype the (N, d + 1) rows [-2 b, ||b||^2],
    and those rows as the columns of a ranking against every point."""
    shifted = z - centre
    low = shifted.to(dtype)
    aug = torch.cat([-2 * low, (low * low).sum(dim=1, keepdim=True)], dim=1)
    return shifted, aug, make_columns(aug, torch.arange(z.shape[0], device=z.device))


def _refine(z: Tensor, q: Tensor, cols: Tensor) -> Tensor:
    """(b, kk) exact float64 squared distances from z[q] to z[cols], by differences
    (cdist's non-matmul mode: 2x faster than the difference tensor, same to 1 ulp)."""
    return torch.cdist(z[q].unsqueeze(1), z[cols], compute_mode="donot_use_mm_for_euclid_dist").squeeze(1).square()


def _far_groups(z: Tensor, layout: _Layout, g: int, q: Tensor, points: Tensor) -> Tensor:
    """(G,) True for the groups that cannot hold any of the kk nearest of block q
    (group g), given `points` (b, kk) of its own group, and for g itself.

    The kk-th exact distance to those bounds every query's kk-th nearest; a
    group whose centre is farther than that plus both radii (triangle
    inequality) is out of reach.
    """
    reach = _refine(z, q, points).amax().sqrt()
    centre = z[q].mean(dim=0)
    gap = (layout.centre - centre).norm(dim=1) - (z[q] - centre).norm(dim=1).max() - layout.radius
    far = gap > reach + 1e-9 * (layout.centre.norm(dim=1) + centre.norm() + layout.radius + reach)
    far[g] = True
    return far


def _query_rows(a: Tensor, dtype: torch.dtype) -> Tensor:
    """(b, d + 1) rows [a, 1] in dtype: against columns [-2 b, ||b||^2], ||b||^2 - 2 a.b."""
    return torch.cat([a.to(dtype), a.new_ones(a.shape[0], 1, dtype=dtype)], dim=1)


def _candidates(z: Tensor, layout: _Layout, g: int, q: Tensor, frame: tuple[Tensor, Tensor, Columns],
                kk: int, prune: bool, dtype: torch.dtype) -> tuple[Tensor, Tensor, bool]:
    """The kk points ranked nearest to each query of block q (group g) (b, kk), a
    bound (b,) on every other ranked point's approximate value, and whether a
    group was skipped.

    With `prune`, the block's own group is ranked first, and the groups out of
    its reach (_far_groups) are skipped. Otherwise every point is ranked at once.
    """
    shifted, aug, every = frame
    qa = _query_rows(shifted[q], dtype)
    s, e = layout.ranges[g]
    if not prune or len(layout.ranges) == 1 or e - s < kk:
        points, bound, _ = nearest(qa, every, kk)
        return points, bound, False
    own = make_columns(aug[s:e], torch.arange(s, e, device=z.device))
    points, bound, minima = nearest(qa, own, kk)
    far = _far_groups(z, layout, g, q, points)
    near = [torch.arange(s2, e2, device=z.device) for h, (s2, e2) in enumerate(layout.ranges) if not far[h]]
    if near:
        rows = torch.cat(near)
        points, bound, _ = nearest(qa, join(own, make_columns(aug[rows], rows)), kk, known=minima)
    return points, bound, len(near) < len(layout.ranges) - 1


@dataclass(frozen=True)
class _Shared:
    """Squared distances between all points, ranked once for every query
    (knn_select.symmetric_minima): rows (N, d + 2) [a, ||a||^2, 1], columns
    [-2 b, 1, ||b||^2], and every point's group minima (P, G)."""

    rows: Tensor
    cols: Columns
    minima: Tensor


def _shared(shifted: Tensor, dtype: torch.dtype) -> _Shared:
    low = shifted.to(dtype)
    sq, one = (low * low).sum(dim=1, keepdim=True), low.new_ones(low.shape[0], 1)
    rows = torch.cat([low, sq, one], dim=1)
    cols = make_columns(torch.cat([-2 * low, one, sq], dim=1), torch.arange(low.shape[0], device=low.device))
    return _Shared(rows, cols, symmetric_minima(rows, cols))


PROBE = 64  # queries per group that test whether class pruning would skip anything
# The shared minima are (N, N / GROUP) float32: 156 MB at N = 50,000, 2.5 GB at
# 200,000. Above this size the block-wise search (1024 x N / GROUP a block) runs.
SHARED_MAX_BYTES = 2 ** 30


def _sharing_pays(z: Tensor, layout: _Layout, blocks: list[tuple[int, Tensor]], whole: tuple[Tensor, Tensor, Columns],
                  kk: int, dtype: torch.dtype) -> bool:
    """Whether ranking all N^2 distances once, half the matmul of ranking each
    block's (the distance is symmetric), costs less than the block-wise search.

    Only on the CPU (where the matmul is the cost), when no block is tight (its
    own frame would not share the ranking), and when class pruning would skip
    nothing: PROBE queries of each group skip at least as often as its blocks.
    And only while the minima take at most SHARED_MAX_BYTES.
    """
    middle = z.mean(dim=0)
    if z.shape[0] ** 2 // GROUP * 4 > SHARED_MAX_BYTES:
        return False
    if z.device.type != "cpu" or any(_tight(z, q, middle) for _, q in blocks):
        return False
    shifted, aug, _ = whole
    for g, (s, e) in enumerate(layout.ranges):
        if len(layout.ranges) == 1 or e - s < kk:
            continue
        q = torch.arange(s, min(e, s + PROBE), device=z.device)
        own = make_columns(aug[s:e], torch.arange(s, e, device=z.device))
        points, _, _ = nearest(_query_rows(shifted[q], dtype), own, kk)
        if int(_far_groups(z, layout, g, q, points).sum()) > 1:
            return False
    return True


def _tight(z: Tensor, q: Tensor, middle: Tensor) -> bool:
    """Whether block q is tight away from the middle of z (a collapsed class): it
    then gets its own frame, so its small distances survive the rounding."""
    centre = z[q].mean(dim=0)
    return bool((z[q] - centre).norm(dim=1).max() < 0.1 * (centre - middle).norm())


def _knn_pass(z: Tensor, layout: _Layout, blocks: list[tuple[int, Tensor]], k: int,
              dtype: torch.dtype, share: bool = False) -> tuple[Tensor, Tensor]:
    """Squared distance from each query to its (k+1)-th nearest point, itself included.

    z: (N, d) float64, rows sorted by group. Distances are ranked in `dtype`,
    in a frame centred on the data (or on a tight block), and the candidates
    re-measured in float64 from differences of z itself. With `share` (every
    point a query), all distances may be ranked at once (_sharing_pays).
    Returns (N,) values (NaN outside the blocks) and (N,) bool: True where the
    rounding bound proves the value exact.
    """
    n, d = z.shape
    kk = min(k + 1 + MARGIN, n)
    # |approx - exact| <= gamma * (||a||^2 + ||b||^2) in the frame, exact the
    # squared distance (less ||a||^2 for [a, 1] queries). To first order in u:
    # the matmul of d + 2 terms, gamma_(d+2) * 2 (||a||^2 + ||b||^2); the
    # norms in dtype (||b||^2, and ||a||^2 in the shared ranking), d u each;
    # the rounding of a and b to dtype, 4 u (||a||^2 + ||b||^2): (3d + 8) u in
    # all. 3d + 16 leaves room for the second order.
    gamma = (3 * d + 16) * _unit_roundoff(dtype, z.device)
    kth = z.new_full((n,), math.nan)
    proven = torch.zeros(n, dtype=torch.bool, device=z.device)
    middle = z.mean(dim=0)
    whole = _frame(z, middle, dtype)
    shared = _shared(whole[0], dtype) if share and _sharing_pays(z, layout, blocks, whole, kk, dtype) else None
    prune = [True] * len(layout.ranges)  # until a block of the group skips nothing
    for g, q in blocks:
        if shared is not None:
            frame = whole
            points, bound, _ = nearest(shared.rows[q], shared.cols, kk, known=shared.minima[q])
            offset = 0.0  # the ranked values are whole squared distances
        else:
            frame = _frame(z, z[q].mean(dim=0), dtype) if _tight(z, q, middle) else whole
            points, bound, prune[g] = _candidates(z, layout, g, q, frame, kk, prune[g], dtype)
            offset = 1.0  # the ranked values lack ||a||^2
        kth[q] = _refine(z, q, points).kthvalue(k + 1, dim=1).values
        # Every ranked point outside the candidates has approx >= bound, hence
        # (||b||^2 <= 2 ||a||^2 + 2 exact) exact >= (bound + offset ||a||^2 -
        # 3 gamma ||a||^2) / (1 + 2 gamma), and >= 0; a skipped group is
        # farther than the block's kk-th exact distance, hence >= kth.
        sq_a = frame[0][q].square().sum(dim=1)
        outside = (bound.double() + (offset - 3 * gamma) * sq_a) / (1 + 2 * gamma)
        proven[q] = (outside.clamp_min(0) >= kth[q]) | (kk == n)
    return kth, proven


def _exact_knn(z: Tensor, queries: Tensor, k: int) -> Tensor:
    """(len(queries),) squared (k+1)-th smallest distance by differences to every point."""
    out = [torch.cdist(z[q], z, compute_mode="donot_use_mm_for_euclid_dist").square()
           .kthvalue(k + 1, dim=1).values for q in queries.split(256)]
    return torch.cat(out)


def knn_sq_distances(z: Tensor, k: int, groups: Tensor | None = None) -> Tensor:
    """(N,) float64 squared distance from each row of z (N, d) to its k-th nearest other row.

    Exact (see the module docstring). groups: optional (N,) labels; a block of
    queries stays inside one group, and whole groups out of reach are skipped,
    which makes collapsed classes cheap.
    """
    z = z.to(torch.float64)
    order = None if groups is None else torch.argsort(groups, stable=True)
    if order is not None:
        z = z[order]
        counts = torch.unique_consecutive(groups[order], return_counts=True)[1].tolist()
    layout = _layout(z, [z.shape[0]] if order is None else counts)
    blocks = _blocks(layout, z.device)
    kth, proven = _knn_pass(z, layout, blocks, k, torch.float32, share=True)
    if not bool(proven.all()):
        redo = [(g, q[~proven[q]]) for g, q in blocks if not bool(proven[q].all())]
        again, sure = _knn_pass(z, layout, redo, k, torch.float64)
        todo = torch.cat([q for _, q in redo])
        kth[todo], proven[todo] = again[todo], sure[todo]
    if not bool(proven.all()):
        todo = (~proven).nonzero().squeeze(1)
        kth[todo] = _exact_knn(z, todo, k)
    if order is None:
        return kth
    return torch.empty_like(kth).scatter_(0, order, kth)


def kl_entropy(z: Tensor, k: int = K_NEIGHBOURS, groups: Tensor | None = None) -> EntropyEstimate:
    """Kozachenko-Leonenko entropy of z (N, d) divided by d, in nats, 1 <= k < N.

    eps_i below EPS_FLOOR_REL * scale (scale = RMS per-dimension std of z) are
    raised to it, and their fraction is returned: duplicates (collapsed points)
    give eps_i = 0. If every row is identical the entropy is -inf (floored = 1).
    """
    n, d = z.shape
    if not 1 <= k < n:
        raise UsageError(f"k-NN entropy needs 1 <= k < N; got k={k}, N={n}")
    z = z.to(torch.float64)
    scale = float(z.var(dim=0, correction=0).mean().sqrt())
    if scale == 0:
        return EntropyEstimate(per_dim=-math.inf, floored=1.0)
    eps = knn_sq_distances(z, k, groups).sqrt()
    floor = EPS_FLOOR_REL * scale
    floored = eps < floor
    log_volume = d / 2 * math.log(math.pi) - math.lgamma(d / 2 + 1)
    digamma = torch.special.digamma(torch.tensor([n, k], dtype=torch.float64)).tolist()
    h = digamma[0] - digamma[1] + log_volume + d * float(eps.clamp_min(floor).log().mean())
    return EntropyEstimate(per_dim=h / d, floored=float(floored.double().mean()))


def entropy_metrics(z: Tensor, k: int = K_NEIGHBOURS, groups: Tensor | None = None) -> dict[str, float]:
    """entropy_per_dim on z (N, d) as given, entropy_per_dim_standardized on each
    dimension at zero mean and unit variance (the authors' version)."""
    return {
        "entropy_per_dim": kl_entropy(z, k, groups).per_dim,
        "entropy_per_dim_standardized": kl_entropy(standardize(z), k, groups).per_dim,
    }
