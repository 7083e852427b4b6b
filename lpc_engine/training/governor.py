"""The gamma governor: each epoch's gamma held below what the classifier's
weights can balance.

The loss CE(W z) + gamma ||z||^2 (eq. 1) is unchanged by W -> cW, z -> z/c,
gamma -> c^2 gamma, so only gamma / ||W||^2 sets how far apart the classes
may sit. Under AdamW the classifier's rows grow by about lr a step, while the
paper's exponential schedule outruns them; once gamma passes what the rows
balance, the classes merge at the origin and never recover (digits: at gamma
about 1.6e4, epoch 294 of the paper's schedule). With `gamma_cap =
"weight-norm"` the gamma of an epoch is

    min(schedule, gamma_cap_factor * mean_k ||W_k||^2)       (sum reduction)

and d times that with the mean reduction, whose penalty is gamma ||z||^2 / d:
the same cap on the penalty itself. The weights are those at the start of
the epoch, so a resumed run computes the same gamma from its checkpoint.
"""

from __future__ import annotations

from torch import Tensor

from lpc_engine.config import GammaConfig


def weight_norm_cap(weight: Tensor, factor: float, reduction: str) -> float:
    """factor * mean_k ||W_k||^2 over the (K, d) classifier rows, in the
    penalty's units (x d for the mean reduction)."""
    cap = factor * float(weight.detach().double().pow(2).sum(dim=1).mean())
    return cap * weight.shape[1] if reduction == "mean" else cap


def governed_gamma(scheduled: float, weight: Tensor, g: GammaConfig) -> float:
    """The gamma an epoch uses: the schedule's, capped by the governor if on."""
    if g.gamma_cap == "none":
        return scheduled
    return min(scheduled, weight_norm_cap(weight, g.gamma_cap_factor, g.penalty_reduction))
