"""Long series, few columns: keep each bucket's extremes so spikes survive.

An 800-epoch run has 800 points per curve but a chart at 80x24 is ~35
columns wide; plotting every point costs time and shows nothing more.
"""

from __future__ import annotations

from collections.abc import Sequence

MAX_POINTS = 240  # points drawn per series: ~2 per column of a wide chart


def downsample(xs: Sequence[float], ys: Sequence[float],
               max_points: int = MAX_POINTS) -> tuple[list[float], list[float]]:
    """At most `max_points` points of (xs, ys): per bucket its minimum and
    maximum in x order; the first and last points are always kept."""
    n = len(xs)
    if n <= max_points:
        return list(xs), list(ys)
    buckets = max(1, (max_points - 2) // 2)
    keep = {0, n - 1}
    for b in range(buckets):
        lo, hi = 1 + b * (n - 2) // buckets, 1 + (b + 1) * (n - 2) // buckets
        if lo >= hi:
            continue
        span = range(lo, hi)
        keep.add(min(span, key=lambda i: ys[i]))
        keep.add(max(span, key=lambda i: ys[i]))
    order = sorted(keep)
    return [xs[i] for i in order], [ys[i] for i in order]
