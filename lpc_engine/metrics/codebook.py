"""The class codebook: which hypercube vertex each class collapses onto (section II.A).

Under LPC every node takes one of two values, opposite with respect to the
origin (Fig. 2), so each class mean sits on a vertex of a hypercube and its
sign pattern over the d nodes is the class's binary code. Classes sharing a
code cannot be told apart by a linear readout of the signs alone; the number
of distinct codes is `codebook_distinct`.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor


@dataclass(frozen=True)
class Codebook:
    """codes: (K, d) int8 of +-1, row p the sign of class p's mean per node
    (a node whose class mean is exactly 0 counts as +1); classes: the K labels
    of the rows, ascending; distinct: the number of distinct codes; shared:
    the groups (tuples of labels, ascending) of two or more classes with the
    same code, ordered by their first label."""

    codes: Tensor
    classes: tuple[int, ...]
    distinct: int
    shared: list[tuple[int, ...]]


def codebook_from_means(means: Tensor, classes: Tensor) -> Codebook:
    """Codebook of class means (K, d) with labels classes (K,)."""
    codes = torch.where(means >= 0, 1, -1).to(torch.int8)
    unique, group = torch.unique(codes.cpu(), dim=0, return_inverse=True)
    labels = [int(c) for c in classes.cpu()]
    members: dict[int, list[int]] = {}
    for label, g in zip(labels, group.tolist()):
        members.setdefault(g, []).append(label)
    shared = sorted(tuple(sorted(m)) for m in members.values() if len(m) > 1)
    return Codebook(codes=codes, classes=tuple(labels), distinct=int(unique.shape[0]), shared=shared)


def class_codebook(z: Tensor, y: Tensor) -> Codebook:
    """Each class's sign pattern: z (N, d) latents, y (N,) integer labels.

    >>> cb = class_codebook(torch.tensor([[1., -2.], [3., -1.], [-1., 1.]]), torch.tensor([0, 0, 1]))
    >>> cb.codes.tolist(), cb.distinct, cb.shared
    ([[1, -1], [-1, 1]], 2, [])
    """
    classes, index, counts = torch.unique(y, return_inverse=True, return_counts=True)
    z = z.to(torch.float64)
    means = z.new_zeros(classes.numel(), z.shape[1]).index_add_(0, index, z) / counts.unsqueeze(1)
    return codebook_from_means(means, classes)
