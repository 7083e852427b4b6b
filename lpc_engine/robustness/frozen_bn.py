"""A model's batch norms as the per-channel affine maps they are in eval mode.

In eval mode a BatchNorm with running statistics is y = x * s + t per channel,
s = w / sqrt(var + eps), t = b - mean * s. DeepFool makes C - 1 backward passes
a step, and PyTorch's batch-norm backward is a general kernel: on the small
CNN it was 12% of the attack's time, and it hands the convolutions NCHW
gradients of channels-last images, which they copy back. As an `addcmul` the
same map's backward is one multiply in the images' own layout: the attack
took 0.90x the time. The values differ from the BatchNorm's in float32
rounding only (per-input ratios within 7.2e-6 relative on the small CNN).
`deepfool` attacks such a copy of any model with batch norms.
"""

from __future__ import annotations

import copy

import torch
from torch import Tensor, nn


class ChannelAffine(nn.Module):
    """x * s + t with s, t per channel (dim 1): an eval-mode BatchNorm1d/2d."""

    def __init__(self, bn: nn.modules.batchnorm._BatchNorm) -> None:
        super().__init__()
        inv = torch.rsqrt(bn.running_var + bn.eps)
        scale = inv if bn.weight is None else bn.weight.detach() * inv
        shift = -bn.running_mean * scale if bn.bias is None else bn.bias.detach() - bn.running_mean * scale
        self.register_buffer("scale", scale)
        self.register_buffer("shift", shift)

    def forward(self, x: Tensor) -> Tensor:
        shape = (1, -1) + (1,) * (x.dim() - 2)  # (N, C), (N, C, L) or (N, C, H, W)
        return torch.addcmul(self.shift.view(shape), x, self.scale.view(shape))


def with_affine_batch_norms(model: nn.Module) -> nn.Module:
    """An eval-mode copy of `model` whose BatchNorm1d/2d modules (with running
    statistics) are ChannelAffine; the model itself where it has none or
    cannot be copied. The caller's model is never changed."""
    kinds = (nn.BatchNorm1d, nn.BatchNorm2d)
    if not any(isinstance(m, kinds) and m.running_var is not None for m in model.modules()):
        return model
    try:
        twin = copy.deepcopy(model).eval()
    except Exception:  # a module that cannot be copied keeps its batch norms
        return model
    for parent in list(twin.modules()):
        for name, child in list(parent.named_children()):
            if isinstance(child, kinds) and child.running_var is not None:
                setattr(parent, name, ChannelAffine(child))
    return twin
