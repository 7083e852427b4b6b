"""The ranking step of the exact k-NN search (entropy.py): for each query, the kk
columns with the smallest approximate value ||b||^2 - 2 a.b, and a bound that
every other column's value is at least.

The values are never stored. Pass 1 runs the matmul in tiles of TILE_ROWS x
TILE_COLS and takes the minimum of each group of GROUP columns while the tile
is still in cache. Any value outside the kk groups with the smallest minima is
>= the (kk+1)-th smallest minimum, and those kk groups hold kk values <= it, so
the kk smallest values all lie in them. Pass 2 recomputes just those groups
(kk x GROUP of the N columns, one batched matmul over the groups they belong
to) and picks the kk smallest. Both passes round like any dot product of
d + 1 (or d + 2) terms in their dtype, which is all the caller's error bound assumes.

Where every point is a query and the values are whole squared distances
(`symmetric_minima`), pass 1 runs once for all queries over the tiles on and
right of the diagonal only: distance is symmetric, so each tile gives the
minima of its rows and of its columns, half the matmul. On 50,000 x 64
spread latents, 1 CPU thread, an entropy's k-NN then spends about 1.1 s in
the matmul, 0.9 s in the tile minima and 1.2 s in the selection
(docs/PERFORMANCE.md).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor

GROUP = 64  # columns per group minimum
SUPER = 8  # groups per super-group, and values per sub-group, in the two-round topk
# 512 x 2048 float32 is 4 MiB: a tile's minima are taken while it is still in
# cache. Measured on 50,000 x 64 spread latents, 1 thread, one entropy's
# k-NN, paired runs: 0.89x and 0.95x the time of 128 x 4096 tiles (2 MiB);
# 256 x 1024 up to 1024 x 2048 lay between (256 x 2048: 0.89x in a third run).
TILE_ROWS, TILE_COLS = 512, 2048
CAP = 48  # queries per recomputed group in pass 2's batched matmul (a group with more is split)


@dataclass(frozen=True)
class Columns:
    """The points one ranking runs over, padded to whole groups.

    aug: (G * GROUP, d + 1) rows [-2 b, ||b||^2] (or (G * GROUP, d + 2) rows
    [-2 b, 1, ||b||^2], symmetric_minima's); a padding row is [0, ..., 0, 1, +inf],
    so its value is +inf against every query. index: (G * GROUP,) the point of
    each column (0 on padding).
    """

    aug: Tensor
    index: Tensor


def make_columns(aug: Tensor, points: Tensor) -> Columns:
    pad = -points.numel() % GROUP
    filler = aug.new_zeros(pad, aug.shape[1])
    # [0, ..., 0, 1, +inf]: +inf against any finite query, and against
    # symmetric_minima's padding rows [0, ..., 0, +inf, 1] too (no 0 * inf).
    filler[:, -2:] = torch.tensor([1.0, math.inf])
    return Columns(torch.cat([aug, filler]), torch.cat([points, points.new_zeros(pad)]))


def join(a: Columns, b: Columns) -> Columns:
    return Columns(torch.cat([a.aug, b.aug]), torch.cat([a.index, b.index]))


def group_minima(qa: Tensor, aug: Tensor) -> Tensor:
    """(b, G) minimum over each group of GROUP columns of qa (b, d+1) @ aug.T, tile by tile."""
    b, n = qa.shape[0], aug.shape[0]
    minima = qa.new_empty(b, n // GROUP)
    rows, cols = (TILE_ROWS, TILE_COLS) if qa.device.type == "cpu" else (b, n)
    tile = qa.new_empty(min(b, rows), min(n, cols))
    for c0 in range(0, n, cols):
        c1 = min(n, c0 + cols)
        for r0 in range(0, b, rows):
            r1 = min(b, r0 + rows)
            out = tile[:r1 - r0, :c1 - c0]
            torch.mm(qa[r0:r1], aug[c0:c1].T, out=out)
            minima[r0:r1, c0 // GROUP:c1 // GROUP] = out.unflatten(1, (-1, GROUP)).amin(dim=2)
    return minima


def symmetric_minima(rows: Tensor, cols: Columns) -> Tensor:
    """(P, G) the minimum over each group of GROUP columns of rows @ cols.aug.T, for
    a product that is symmetric up to rounding: rows (N, d + 2) [a, ||a||^2, 1]
    against columns [-2 b, 1, ||b||^2] of the same N points give the squared
    distances. P = G * GROUP rows (+inf on padding rows).

    Only the tiles on and right of the diagonal are computed, half the matmul:
    a tile yields its rows' minima over its column groups, and, read down its
    columns, its columns' minima over its row groups. Every (point, group) pair
    is covered: a group left of a row tile lies in an earlier row tile, whose
    columns reach every later point.
    """
    n, (p, width) = rows.shape[0], cols.aug.shape
    rows = torch.cat([rows, rows.new_zeros(p - n, width)])
    rows[n:, -2:] = torch.tensor([math.inf, 1.0])
    minima = rows.new_empty(p, p // GROUP)
    tile = rows.new_empty(min(p, TILE_ROWS), min(p, TILE_COLS))
    for r0 in range(0, p, TILE_ROWS):
        r1 = min(p, r0 + TILE_ROWS)
        for c0 in range(r0, p, TILE_COLS):
            c1 = min(p, c0 + TILE_COLS)
            out = tile[:r1 - r0, :c1 - c0]
            torch.mm(rows[r0:r1], cols.aug[c0:c1].T, out=out)
            minima[r0:r1, c0 // GROUP:c1 // GROUP] = out.unflatten(1, (-1, GROUP)).amin(dim=2)
            minima[c0:c1, r0 // GROUP:r1 // GROUP] = out.unflatten(0, (-1, GROUP)).amin(dim=1).T
    return minima


def nearest(qa: Tensor, cols: Columns, kk: int,
            known: Tensor | None = None) -> tuple[Tensor, Tensor, Tensor]:
    """The kk columns of `cols` with the smallest values for each query row of qa
    (b, d + 1), or (b, d + 2) against symmetric columns: their points (b, kk), a bound (b,) that every other column's value
    is >= (up to the rounding of either pass), and the group minima (b, G).

    known: minima of the first groups of `cols`, from an earlier call.
    cols must hold at least kk real columns.
    """
    b, groups = qa.shape[0], cols.aug.shape[0] // GROUP
    have = 0 if known is None else known.shape[1]
    minima = group_minima(qa, cols.aug[have * GROUP:])
    minima = minima if known is None else torch.cat([known, minima], dim=1)
    if groups <= kk:  # few columns: rank them all
        vals, pos = torch.topk(qa @ cols.aug.T, kk, dim=1, largest=False)
        return cols.index[pos], vals[:, -1], minima
    chosen = _smallest(minima, kk)
    outside = minima.scatter(1, chosen, math.inf).amin(dim=1)
    out, where = _recompute(qa, cols.aug.view(groups, GROUP, -1), chosen)
    vals, pair, offset = _kk_smallest(out, where, kk)
    col = chosen.gather(1, pair) * GROUP + offset
    return cols.index[col], torch.minimum(vals[:, -1], outside), minima


def _smallest(minima: Tensor, kk: int) -> Tensor:
    """(b, kk) indices of the kk smallest minima (b, G) of each row, in no order.

    In two rounds, among the kk super-groups of SUPER groups with the smallest
    minima (the argument above, one level up): topk costs ~10x less an element
    on 98 columns than on 782.
    """
    b, groups = minima.shape
    supers = -(-groups // SUPER)
    if supers <= kk:
        return torch.topk(minima, kk, dim=1, largest=False, sorted=False).indices
    padded = minima.new_full((b, supers * SUPER), math.inf)
    padded[:, :groups] = minima
    top = torch.topk(padded.view(b, supers, SUPER).amin(dim=2), kk, dim=1, largest=False, sorted=False).indices
    inside = (top.unsqueeze(2) * SUPER + torch.arange(SUPER, device=minima.device)).view(b, -1)
    pick = torch.topk(padded.gather(1, inside), kk, dim=1, largest=False, sorted=False).indices
    return inside.gather(1, pick)


def _kk_smallest(out: Tensor, where: Tensor, kk: int) -> tuple[Tensor, Tensor, Tensor]:
    """The kk smallest values over each query's chosen groups, ascending (b, kk),
    with which of its pairs (b, kk) and which column of the group (b, kk) they are.

    out: (M, GROUP) recomputed rows; where: (b, kk) the row of out of each
    (query, chosen group) pair. Through minima of sub-groups of SUPER columns,
    as `_smallest`, so only 1/SUPER of the values is gathered per query.
    """
    b = where.shape[0]
    sub = out.view(out.shape[0], GROUP // SUPER, SUPER)
    minima = sub.amin(dim=2)[where].view(b, -1)  # (b, kk * GROUP / SUPER)
    top = torch.topk(minima, kk, dim=1, largest=False, sorted=False).indices
    pair, part = top // (GROUP // SUPER), top % (GROUP // SUPER)
    values = sub[where.gather(1, pair), part].view(b, -1)  # (b, kk * SUPER)
    vals, pick = torch.topk(values, kk, dim=1, largest=False)
    top_pick = top.gather(1, pick // SUPER)
    return vals, top_pick // (GROUP // SUPER), (top_pick % (GROUP // SUPER)) * SUPER + pick % SUPER


def _recompute(qa: Tensor, groups: Tensor, chosen: Tensor) -> tuple[Tensor, Tensor]:
    """The values of the chosen groups (b, kk) of groups (G, GROUP, d+1), as rows
    out (M, GROUP), and where (b, kk): the row of each (query, group) pair.

    Grouped by group, so one batched matmul does it: the pairs are sorted by
    group and each group's queries fill the rows of its matmul, padded to the
    largest count; where that would more than double the work (counts very
    uneven), a group's queries go CAP to a matmul instead.
    """
    flat = chosen.reshape(-1)
    order = torch.argsort(flat)
    g = flat[order]
    counts = torch.bincount(g, minlength=groups.shape[0])
    rank = torch.arange(flat.numel(), device=qa.device) - (counts.cumsum(0) - counts)[g]
    widest = int(counts.max())
    if groups.shape[0] * widest <= 2 * flat.numel():  # one matmul a group, no gather of groups
        cap, part, mats = widest, g, groups
    else:
        cap = CAP
        parts = -(-counts // cap)  # matmuls per group
        part = (parts.cumsum(0) - parts)[g] + rank // cap
        mats = groups[torch.repeat_interleave(parts)]
    slot = part * cap + rank % cap
    # The query of every row of every matmul (an all-zero extra query on padding), in one gather.
    rows = torch.full((mats.shape[0] * cap,), qa.shape[0], dtype=torch.int64, device=qa.device)
    rows[slot] = order // chosen.shape[1]
    queries = torch.cat([qa, qa.new_zeros(1, qa.shape[1])])[rows].view(mats.shape[0], cap, -1)
    out = torch.bmm(queries, mats.transpose(1, 2)).view(-1, GROUP)
    where = torch.empty_like(flat)
    where[order] = slot
    return out, where.view(chosen.shape)
