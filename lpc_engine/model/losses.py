"""Loss terms: the LPC latent penalty, SupCon, and ArcFace/CosFace margins.

Pure functions on tensors; the trainer decides which ones to add (Table III):
CE + gamma * penalty for the LPC variants, CE + SupCon for SCL / LPC-SCL, and
cross-entropy on margin logits in place of plain CE for ArcFace / CosFace.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from lpc_engine.config import REDUCTIONS
from lpc_engine.errors import ConfigError

# Appendix C: "set to a low value 0.05 to increase margins in latent space".
# The margins and scales of appendix C are the config's (LossConfig).
SUPCON_TEMPERATURE: float = 0.05

MARGIN_KINDS: tuple[str, ...] = ("arcface", "cosface")

# Keeps acos away from +-1, where its derivative -1/sqrt(1 - x^2) is infinite.
_COS_EPS = 1e-7


def latent_penalty(z: Tensor, gamma: float, reduction: str = "sum") -> Tensor:
    """gamma * ||z||^2 averaged over the batch: the L2 term of eq. (1).

    z: (B, d) latents (extra trailing dims are flattened into d).
    reduction "sum" is the paper's ||z||^2 (sum over the d latent dims);
    "mean" also divides by d, as the authors' code does (their gamma_max = 1e6
    was tuned with it, DESIGN.md). Returns a scalar.

    >>> latent_penalty(torch.tensor([[3.0, 4.0]]), gamma=2.0)
    tensor(50.)
    """
    if reduction not in REDUCTIONS:
        raise ConfigError(
            f"unknown penalty reduction {reduction!r}; allowed: {', '.join(REDUCTIONS)}"
        )
    squared = z.flatten(1).pow(2)
    per_sample = squared.sum(dim=1) if reduction == "sum" else squared.mean(dim=1)
    return gamma * per_sample.mean()


class LatentPenalty(nn.Module):
    """`latent_penalty` as a module with a settable `gamma`, for a training
    loop (or a Lightning callback) that raises gamma on a schedule.

    z: (B, d) -> scalar gamma * mean_b ||z_b||^2 ("sum") or / d ("mean").

    Example::

        >>> penalty = LatentPenalty(gamma=1e-2)
        >>> loss = F.cross_entropy(out.logits, y) + penalty(out.latent)
        >>> penalty.gamma = schedule.at(epoch + 1)
    """

    def __init__(self, gamma: float = 0.0, reduction: str = "sum") -> None:
        super().__init__()
        if reduction not in REDUCTIONS:
            raise ConfigError(f"unknown penalty reduction {reduction!r}; allowed: {', '.join(REDUCTIONS)}")
        self.gamma = float(gamma)
        self.reduction = reduction

    def forward(self, z: Tensor) -> Tensor:
        return latent_penalty(z, self.gamma, self.reduction)

    def extra_repr(self) -> str:
        return f"gamma={self.gamma:g}, reduction={self.reduction!r}"


def supcon_loss(features: Tensor, labels: Tensor, temperature: float = SUPCON_TEMPERATURE) -> Tensor:
    """Supervised contrastive loss (Khosla et al. 2020), as written in appendix C.

    features: (B, D) backbone features h; they are L2-normalised here, so
    s_ij is a cosine similarity. labels: (B,) integer class ids.

    L = -mean_{i in A} 1/|P(i)| sum_{p in P(i)} log[ exp(s_ip/tau) / sum_{j != i} exp(s_ij/tau) ]

    where P(i) are the other samples with label y_i and A the anchors with
    |P(i)| >= 1 (an anchor alone in its class has no term to average). With no
    such anchor the result is a zero still attached to the graph, so
    `loss.backward()` works on any batch. Returns a scalar.
    """
    if temperature <= 0:
        raise ConfigError(f"SupCon temperature must be > 0, got {temperature}")
    if features.dim() != 2 or labels.shape != features.shape[:1]:
        raise ValueError(
            f"supcon_loss expects features (B, D) and labels (B,), "
            f"got {tuple(features.shape)} and {tuple(labels.shape)}"
        )
    unit = F.normalize(features, dim=1)
    per_anchor, has_pos = _anchor_terms(unit, labels, unit, labels, 0, temperature)
    if not bool(has_pos.any()):
        return per_anchor.sum() * 0.0
    return -per_anchor[has_pos].mean()


def supcon_loss_part(features: Tensor, labels: Tensor, all_features: Tensor, all_labels: Tensor,
                     offset: int, temperature: float = SUPCON_TEMPERATURE) -> Tensor:
    """This process's share of SupCon over a global batch split across
    processes (distributed.py), as a mean over its own samples.

    features, labels: (B_r, D), (B_r,), its rows offset..offset+B_r of the
    global batch all_features, all_labels (B, D), (B,). Its anchors are its
    own rows, contrasted with the whole batch, so that summed over
    processes with weights B_r, the shares give B * supcon_loss(all): with
    A the global number of anchors that have a positive, the share is
    -sum(own anchors' terms) * B / (B_r * A). No host sync.
    """
    per_anchor, has_pos = _anchor_terms(F.normalize(features, dim=1), labels,
                                        F.normalize(all_features, dim=1), all_labels, offset,
                                        temperature)
    same = all_labels[:, None] == all_labels[None, :]  # (B, B); bincount would sync
    anchors = (same.sum(dim=1) > 1).sum().clamp(min=1)
    own = torch.where(has_pos, per_anchor, torch.zeros_like(per_anchor)).sum()
    return -own * (len(all_labels) / len(labels)) / anchors


def _anchor_terms(unit: Tensor, labels: Tensor, unit_all: Tensor, labels_all: Tensor,
                  offset: int, temperature: float) -> tuple[Tensor, Tensor]:
    """For anchors i (rows of `unit`, which are rows offset.. of `unit_all`):
    1/|P(i)| sum_{p in P(i)} log softmax_{j != i}(s_ij / tau)[p], and whether
    P(i) is non-empty."""
    sim = unit @ unit_all.T / temperature  # (R, B)
    rows = torch.arange(len(labels), device=unit.device)
    self_mask = torch.zeros_like(sim, dtype=torch.bool)
    self_mask[rows, rows + offset] = True
    # logsumexp over j != i subtracts the row max internally: stable at tau = 0.05.
    log_denom = torch.logsumexp(sim.masked_fill(self_mask, float("-inf")), dim=1, keepdim=True)
    log_prob = sim - log_denom  # (R, B); the self entries are never used
    positives = (labels[:, None] == labels_all[None, :]) & ~self_mask
    n_pos = positives.sum(dim=1)  # (R,)
    pos_log_prob = torch.where(positives, log_prob, torch.zeros_like(log_prob)).sum(dim=1)
    return pos_log_prob / n_pos.clamp(min=1), n_pos > 0


def margin_logits(cosine: Tensor, labels: Tensor, kind: str, margin: float, scale: float) -> Tensor:
    """Scaled cosines with a margin on the target class (appendix C, [59; 60]).

    cosine: (B, K) cos(theta) from a cosine classifier; labels: (B,) targets.
    ArcFace: s * cos(theta_y + m) on the target, s * cos(theta) elsewhere.
    CosFace: s * (cos(theta_y) - m) on the target, s * cos(theta) elsewhere.
    Returns (B, K) logits; the caller applies cross-entropy.

    ArcFace follows the appendix formula literally: no "easy margin" or
    theta + m > pi correction, which some implementations add.
    """
    if kind not in MARGIN_KINDS:
        raise ConfigError(f"unknown margin kind {kind!r}; allowed: {', '.join(MARGIN_KINDS)}")
    target = F.one_hot(labels, num_classes=cosine.shape[1]).bool()  # (B, K)
    if kind == "arcface":
        theta = torch.acos(cosine.clamp(-1 + _COS_EPS, 1 - _COS_EPS))
        adjusted = torch.cos(theta + margin)
    else:
        adjusted = cosine - margin
    return scale * torch.where(target, adjusted, cosine)


def ramp(progress: float, start: float, end: float) -> float:
    """Linear ramp from `start` (progress 0) to `end` (progress 1).

    progress is clamped to [0, 1]. Used for the ArcFace / CosFace margin and
    scale, raised over training (appendix C).

    >>> ramp(0.5, 16.0, 64.0)
    40.0
    """
    p = min(max(float(progress), 0.0), 1.0)
    return start + (end - start) * p
