"""The LPC head as a module for anyone's network (section II).

Backbone features h -> the linear penultimate layer z = W_L2 h + b_L2 (with
bias, as the paper writes it) -> the classifier f = W z (no bias by default,
appendix C). The penalty gamma * ||z||^2 (eq. 1) then acts on z: see
`LatentPenalty`.
"""

from __future__ import annotations

from torch import Tensor, nn

from lpc_engine.errors import UsageError
from lpc_engine.model.network import ModelOutput


class LPCHead(nn.Module):
    """h (B, in_features) -> ModelOutput(logits (B, K), latent z (B, d), features h).

    Put it after any backbone; the output is a NamedTuple, so `out.logits`
    goes to the cross-entropy and `out.latent` to the penalty, and
    `lpc_engine.deepfool` attacks the composed model as it is.

    Example::

        >>> model = nn.Sequential(nn.Flatten(), nn.Linear(64, 256), nn.ReLU(),
        ...                       LPCHead(256, num_classes=10, latent_dim=16))
        >>> out = model(torch.randn(8, 1, 8, 8))
        >>> out.logits.shape, out.latent.shape
        (torch.Size([8, 10]), torch.Size([8, 16]))
    """

    def __init__(self, in_features: int, num_classes: int, latent_dim: int,
                 classifier_bias: bool = False) -> None:
        super().__init__()
        for name, value, low in (("in_features", in_features, 1), ("num_classes", num_classes, 2),
                                 ("latent_dim", latent_dim, 1)):
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise UsageError(f"LPCHead: {name} must be an integer >= {low}, got {value!r}")
        self.penultimate = nn.Linear(in_features, latent_dim, bias=True)
        self.classifier = nn.Linear(latent_dim, num_classes, bias=classifier_bias)

    def forward(self, h: Tensor) -> ModelOutput:
        z = self.penultimate(h.flatten(1))
        return ModelOutput(logits=self.classifier(z), latent=z, features=h)
