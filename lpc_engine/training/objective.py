"""The training objective of each preset (eq. 1 and appendix C).

    LPC family:      CE + gamma * ||z||^2            (eq. 1)
    *-SCL:           CE (+ penalty) + w * SupCon(h)  (SupCon on backbone features)
    ArcFace/CosFace: CE on margin logits (replaces CE; margin and scale ramped)
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from lpc_engine.config import RunConfig
from lpc_engine.parallel.distributed import BatchShare
from lpc_engine.model.losses import latent_penalty, margin_logits, ramp, supcon_loss, supcon_loss_part
from lpc_engine.model.network import ModelOutput
from lpc_engine.presets import Preset
from lpc_engine.training.schedules import ramp_progress


@dataclass(frozen=True)
class EpochObjective:
    """What the loss needs to know during one epoch."""

    preset: Preset
    gamma: float
    reduction: str
    supcon_temperature: float
    supcon_weight: float
    margin: float  # ArcFace/CosFace margin this epoch
    scale: float  # ArcFace/CosFace logit scale this epoch


def objective_for_epoch(cfg: RunConfig, preset: Preset, epoch: int, gamma: float) -> EpochObjective:
    """The objective of `epoch`, with its ramped margin and scale."""
    t = ramp_progress(epoch, cfg.loss.margin_ramp_epochs)
    margin_range = cfg.loss.cosface_margin if preset.loss == "cosface" else cfg.loss.arcface_margin
    return EpochObjective(
        preset=preset, gamma=gamma, reduction=cfg.gamma.penalty_reduction,
        supcon_temperature=cfg.loss.supcon_temperature, supcon_weight=cfg.loss.supcon_weight,
        margin=ramp(t, *margin_range), scale=ramp(t, *cfg.loss.margin_scale),
    )


def compute_loss(out: ModelOutput, y: Tensor, obj: EpochObjective,
                 share: BatchShare | None = None) -> tuple[Tensor, Tensor, Tensor]:
    """(total loss, classification term, penalty term) for one batch.

    With `share`, the batch is this process's part of a global batch
    (distributed.py): each term is a mean over its samples that, summed over
    processes with their sample counts as weights, gives the global batch's
    value (SupCon contrasts its samples with the whole batch)."""
    if obj.preset.loss in ("arcface", "cosface"):
        ce = F.cross_entropy(margin_logits(out.logits, y, obj.preset.loss, obj.margin, obj.scale), y)
    else:
        ce = F.cross_entropy(out.logits, y)
    if obj.preset.penalty:
        penalty = latent_penalty(out.latent, obj.gamma, obj.reduction)
    else:
        penalty = torch.zeros((), device=ce.device)
    loss = ce + penalty
    if obj.preset.loss == "ce+supcon":
        if share is None:
            contrast = supcon_loss(out.features, y, obj.supcon_temperature)
        else:
            contrast = supcon_loss_part(out.features, y, share.gather(out.features), share.gather(y),
                                        share.offset, obj.supcon_temperature)
        loss = loss + obj.supcon_weight * contrast
    return loss, ce, penalty
