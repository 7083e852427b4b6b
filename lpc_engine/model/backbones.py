"""Feature extractors h(x): the part of the network shared by every variant.

The paper (section III) gives all eleven architectures one backbone producing
h(x); they differ only in what sits between h(x) and the classifier. Appendix C
uses CIFAR ResNets (ResNet-18 for CIFAR-10, ResNet-50 for CIFAR-100) with batch
normalisation and Swish (SiLU) in every non-linear layer. `mlp` and `cnn` are
small backbones for quick runs on small data (scikit-learn digits, MNIST).

Every backbone maps a batch (B, *input_shape) to features (B, out_features).
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor, nn

from lpc_engine.errors import ConfigError

BACKBONES: tuple[str, ...] = ("mlp", "cnn", "resnet18", "resnet34", "resnet50")


class MLP(nn.Module):
    """Three Linear-BatchNorm-SiLU blocks on the flattened input.

    Input (B, *input_shape), any shape; output (B, 128).
    """

    def __init__(self, in_features: int, widths: tuple[int, ...] = (256, 256, 128)) -> None:
        super().__init__()
        layers: list[nn.Module] = [nn.Flatten()]
        previous = in_features
        for width in widths:
            layers += [nn.Linear(previous, width), nn.BatchNorm1d(width), nn.SiLU()]
            previous = width
        self.net = nn.Sequential(*layers)
        self.out_features = previous

    def forward(self, x: Tensor) -> Tensor:
        """x: (B, ...) -> (B, out_features)."""
        return self.net(x)


def _conv_bn_silu(c_in: int, c_out: int, stride: int) -> list[nn.Module]:
    # No conv bias: the BatchNorm that follows has its own shift.
    return [
        nn.Conv2d(c_in, c_out, 3, stride=stride, padding=1, bias=False),
        nn.BatchNorm2d(c_out),
        nn.SiLU(),
    ]


class SmallCNN(nn.Module):
    """A small CIFAR-style conv net: 32-64-128 channels, two stride-2 stages.

    Input (B, C, H, W) with H, W >= 1 (8x8 digits, 28x28 MNIST, 32x32 CIFAR
    all work: padding keeps every stage at least 1x1); output (B, 128) after a
    global average pool, so the input size does not change out_features.
    """

    def __init__(self, in_channels: int) -> None:
        super().__init__()
        self.net = nn.Sequential(
            *_conv_bn_silu(in_channels, 32, 1),
            *_conv_bn_silu(32, 32, 1),
            *_conv_bn_silu(32, 64, 2),
            *_conv_bn_silu(64, 64, 1),
            *_conv_bn_silu(64, 128, 2),
            *_conv_bn_silu(128, 128, 1),
            nn.AdaptiveAvgPool2d(1),
            nn.Flatten(),
        )
        self.out_features = 128

    def forward(self, x: Tensor) -> Tensor:
        """x: (B, C, H, W) -> (B, 128)."""
        return self.net(x)


class BasicBlock(nn.Module):
    """ResNet basic block (two 3x3 convs), SiLU instead of ReLU (appendix C)."""

    expansion = 1

    def __init__(self, c_in: int, width: int, stride: int) -> None:
        super().__init__()
        c_out = width * self.expansion
        self.body = nn.Sequential(
            *_conv_bn_silu(c_in, width, stride),
            nn.Conv2d(width, c_out, 3, padding=1, bias=False),
            nn.BatchNorm2d(c_out),
        )
        self.shortcut = _shortcut(c_in, c_out, stride)
        self.act = nn.SiLU()

    def forward(self, x: Tensor) -> Tensor:
        """x: (B, c_in, H, W) -> (B, c_out, H/stride, W/stride)."""
        return self.act(self.body(x) + self.shortcut(x))


class Bottleneck(nn.Module):
    """ResNet bottleneck block (1x1, 3x3, 1x1; 4x expansion), SiLU activations."""

    expansion = 4

    def __init__(self, c_in: int, width: int, stride: int) -> None:
        super().__init__()
        c_out = width * self.expansion
        self.body = nn.Sequential(
            nn.Conv2d(c_in, width, 1, bias=False),
            nn.BatchNorm2d(width),
            nn.SiLU(),
            *_conv_bn_silu(width, width, stride),
            nn.Conv2d(width, c_out, 1, bias=False),
            nn.BatchNorm2d(c_out),
        )
        self.shortcut = _shortcut(c_in, c_out, stride)
        self.act = nn.SiLU()

    def forward(self, x: Tensor) -> Tensor:
        """x: (B, c_in, H, W) -> (B, c_out, H/stride, W/stride)."""
        return self.act(self.body(x) + self.shortcut(x))


def _shortcut(c_in: int, c_out: int, stride: int) -> nn.Module:
    # Projection shortcut only when the shape changes (He et al. 2016, option B).
    if stride == 1 and c_in == c_out:
        return nn.Identity()
    return nn.Sequential(
        nn.Conv2d(c_in, c_out, 1, stride=stride, bias=False),
        nn.BatchNorm2d(c_out),
    )


class ResNet(nn.Module):
    """CIFAR-style ResNet: 3x3 stride-1 stem, no max-pool, four stages.

    Stages have widths 64-128-256-512 and strides 1-2-2-2, so a 32x32 input
    ends at 4x4 and an 8x8 input at 1x1 before the global average pool.
    Input (B, C, H, W); output (B, 512 * block.expansion).
    """

    def __init__(
        self,
        block: type[BasicBlock] | type[Bottleneck],
        depths: tuple[int, int, int, int],
        in_channels: int,
    ) -> None:
        super().__init__()
        self.stem = nn.Sequential(*_conv_bn_silu(in_channels, 64, 1))
        stages: list[nn.Module] = []
        c_in = 64
        for i, (width, depth) in enumerate(zip((64, 128, 256, 512), depths)):
            stride = 1 if i == 0 else 2
            blocks: list[nn.Module] = []
            for j in range(depth):
                blocks.append(block(c_in, width, stride if j == 0 else 1))
                c_in = width * block.expansion
            stages.append(nn.Sequential(*blocks))
        self.stages = nn.Sequential(*stages)
        self.pool = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten())
        self.out_features = c_in

    def forward(self, x: Tensor) -> Tensor:
        """x: (B, C, H, W) -> (B, out_features)."""
        return self.pool(self.stages(self.stem(x)))


def _image_builders() -> dict[str, Callable[[int], nn.Module]]:
    return {
        "cnn": SmallCNN,
        "resnet18": lambda c: ResNet(BasicBlock, (2, 2, 2, 2), c),
        "resnet34": lambda c: ResNet(BasicBlock, (3, 4, 6, 3), c),
        "resnet50": lambda c: ResNet(Bottleneck, (3, 4, 6, 3), c),
    }


def build_backbone(name: str, input_shape: tuple[int, ...]) -> nn.Module:
    """Build the feature extractor h(x) called `name`.

    input_shape: (C, H, W) for images or (F,) for flat features, without the
    batch dimension. The returned module has an int attribute `out_features`
    and maps (B, *input_shape) to (B, out_features).

    >>> build_backbone("cnn", (1, 8, 8))(torch.zeros(2, 1, 8, 8)).shape
    torch.Size([2, 128])
    """
    if name not in BACKBONES:
        raise ConfigError(f"unknown backbone {name!r}; allowed: {', '.join(BACKBONES)}")
    shape = tuple(int(s) for s in input_shape)
    if not shape or any(s < 1 for s in shape):
        raise ConfigError(f"input shape {input_shape!r} must hold positive sizes")
    if name == "mlp":
        return MLP(int(torch.Size(shape).numel()))
    if len(shape) != 3:
        raise ConfigError(
            f"backbone {name!r} needs image input (C, H, W), got shape {shape}; "
            "use 'mlp' for flat features"
        )
    return _image_builders()[name](shape[0])
