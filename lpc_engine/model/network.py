"""The classifier network: backbone h(x), optional penultimate layer z, classifier.

Section II adds a linear penultimate layer z = W_L2 h(x) + b_L2 before the
classifier f = W z + b, and penalises ||z||^2 (eq. 1). The ablation of section
III and Table III varies only this head:

- "linear":    z = W_L2 h + b_L2, then f = W z           (LPC*, LinPen)
- "nonlinear": z = SiLU(W_L2 h + b_L2), then f = W z     (NonlinPen)
- "none":      z = h, f = W h                            (NoPen, LPC-NoPen, SCL)
- "cosine":    z = h, f = cos(theta) between h and W     (ArcFace, CosFace)

The classifier bias is zero by default (appendix C, following [60]).
"""

from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from lpc_engine.model.backbones import build_backbone
from lpc_engine.errors import ConfigError

HEADS: tuple[str, ...] = ("linear", "nonlinear", "none", "cosine")


class ModelOutput(NamedTuple):
    """What one forward pass returns.

    logits:   (B, K) classifier output (cosines in [-1, 1] for the cosine head).
    latent:   (B, d) z, whatever enters the last classifier; the penalty and
              the collapse metrics act on it.
    features: (B, D) h(x), the backbone output; SupCon acts on it (appendix C).
    """

    logits: Tensor
    latent: Tensor
    features: Tensor


class CosineClassifier(nn.Module):
    """Logits are cos(theta) between L2-normalised inputs and class weights.

    ArcFace / CosFace (appendix C) modify these cosines with a margin and a
    scale inside the loss, so the module itself stays margin-free and
    argmax(logits) is the prediction at train and test time alike.
    """

    def __init__(self, in_features: int, num_classes: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.empty(num_classes, in_features))
        nn.init.xavier_uniform_(self.weight)

    def forward(self, z: Tensor) -> Tensor:
        """z: (B, d) -> cosines (B, K) in [-1, 1]."""
        return F.linear(F.normalize(z, dim=1), F.normalize(self.weight, dim=1))


class LpcModel(nn.Module):
    """backbone -> penultimate -> classifier, returning a `ModelOutput`.

    The classifier is its own submodule so the trainer can give
    `model.classifier.parameters()` a separate param group that the LR
    schedule leaves alone (appendix C).
    """

    def __init__(self, backbone: nn.Module, penultimate: nn.Module, classifier: nn.Module) -> None:
        super().__init__()
        self.backbone = backbone
        self.penultimate = penultimate
        self.classifier = classifier

    def forward(self, x: Tensor) -> ModelOutput:
        """x: (B, *input_shape) -> ModelOutput(logits (B, K), latent (B, d), features (B, D))."""
        h = self.backbone(x)
        z = self.penultimate(h)
        return ModelOutput(logits=self.classifier(z), latent=z, features=h)


def _penultimate(head: str, in_features: int, latent_dim: int | None) -> tuple[nn.Module, int]:
    """The layer between h and the classifier, and the size of what it outputs."""
    if head in ("none", "cosine"):
        return nn.Identity(), in_features
    if latent_dim is None or isinstance(latent_dim, bool) or int(latent_dim) != latent_dim:
        raise ConfigError(f"head {head!r} needs an integer latent_dim, got {latent_dim!r}")
    if latent_dim < 1:
        raise ConfigError(f"latent_dim must be >= 1, got {latent_dim}")
    # A Linear with bias: z = W_L2 h + b_L2 (section II).
    linear = nn.Linear(in_features, int(latent_dim), bias=True)
    if head == "linear":
        return linear, int(latent_dim)
    return nn.Sequential(linear, nn.SiLU()), int(latent_dim)


def build_model(
    backbone: str,
    head: str,
    input_shape: tuple[int, ...],
    num_classes: int,
    latent_dim: int | None,
    classifier_bias: bool = False,
) -> LpcModel:
    """Build backbone + head + classifier for inputs (B, *input_shape).

    latent_dim is required for the "linear" and "nonlinear" heads and ignored
    by "none" and "cosine" (their latent is h itself). classifier_bias=True is
    refused for the cosine head, whose logits are pure cosines.
    """
    if head not in HEADS:
        raise ConfigError(f"unknown head {head!r}; allowed: {', '.join(HEADS)}")
    if isinstance(num_classes, bool) or int(num_classes) != num_classes or num_classes < 2:
        raise ConfigError(f"num_classes must be an integer >= 2, got {num_classes!r}")
    h = build_backbone(backbone, input_shape)
    penultimate, d = _penultimate(head, h.out_features, latent_dim)
    classifier: nn.Module
    if head == "cosine":
        if classifier_bias:
            raise ConfigError("the cosine head has no classifier bias")
        classifier = CosineClassifier(d, int(num_classes))
    else:
        classifier = nn.Linear(d, int(num_classes), bias=classifier_bias)
    return LpcModel(h, penultimate, classifier)
