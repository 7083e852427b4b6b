"""Training-time augmentation done on the device, one batch at a time.

The paper (appendix C) augments CIFAR with "random horizontal flips and random
cropping (with padding = 4)". Doing that per sample in a Python loop or on the
host would starve a GPU, so, as in airbench, the whole batch is augmented with
one gather: pad once, draw a crop offset and a flip bit per sample, build each
sample's row and column index grid, and index the padded batch with them.
Nothing here reads a value back to the host, so it never synchronises.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor


def augment_batch(
    x: Tensor,
    padding: int,
    flip: bool,
    generator: torch.Generator,
    *,
    fill: float | Sequence[float] = 0.0,
) -> Tensor:
    """Randomly crop (with padding) and horizontally flip each sample.

    Args:
        x: (N, C, H, W) images on any device. Flat (N, F) inputs have no
            spatial layout to crop or mirror and are returned unchanged.
        padding: border added on every side before cropping back to (H, W);
            each sample's top-left corner is drawn uniformly from
            [0, 2 * padding]^2, so offset (padding, padding) is the identity.
        flip: mirror each sample left-right with probability 1/2.
        generator: a `torch.Generator` on x's device; the output is a pure
            function of x and the generator's state.
        fill: value of the padded border, one float or one per channel.
            The default 0 is zero padding of the tensor as given; on
            normalised inputs, `fill = [-m / s for m, s in zip(mean, std)]`
            pads with black as torchvision's RandomCrop on raw images does.

    Returns:
        (N, C, H, W) tensor of x's dtype and device; `x` itself when there is
        nothing to do (padding 0 and no flip, or a flat input).

    Example:
        >>> g = torch.Generator().manual_seed(0)
        >>> augment_batch(torch.randn(8, 3, 32, 32), 4, True, g).shape
        torch.Size([8, 3, 32, 32])
    """
    if padding < 0:
        raise ValueError(f"padding must be >= 0, got {padding}")
    if x.dim() != 4 or (padding == 0 and not flip):
        return x
    n, _, h, w = x.shape
    dev = x.device
    xp = _pad(x, padding, fill)
    # Per-sample offsets and flip bits, drawn on the device from `generator`.
    top = torch.randint(0, 2 * padding + 1, (n, 1), generator=generator, device=dev)
    left = torch.randint(0, 2 * padding + 1, (n, 1), generator=generator, device=dev)
    rows = top + torch.arange(h, device=dev)  # (N, H) rows of the padded image
    cols = left + torch.arange(w, device=dev)  # (N, W) columns of the padded image
    if flip:
        mirrored = torch.randint(0, 2, (n, 1), generator=generator, device=dev).bool()
        # Reading the crop's columns right to left mirrors the crop.
        cols = torch.where(mirrored, cols.flip(1), cols)
    # One advanced-indexing gather: out[i, c, r, s] = xp[i, c, rows[i, r], cols[i, s]].
    batch = torch.arange(n, device=dev).view(n, 1, 1, 1)
    chans = torch.arange(x.shape[1], device=dev).view(1, -1, 1, 1)
    return xp[batch, chans, rows.view(n, 1, h, 1), cols.view(n, 1, 1, w)]


def _pad(x: Tensor, padding: int, fill: float | Sequence[float]) -> Tensor:
    """(N, C, H, W) -> (N, C, H + 2p, W + 2p), the border set to `fill`.

    A per-channel fill is written channel by channel with Python scalars
    rather than copied over from a host tensor, which would synchronise.
    """
    if padding == 0:
        return x
    n, c, h, w = x.shape
    if isinstance(fill, (int, float)):
        out = x.new_full((n, c, h + 2 * padding, w + 2 * padding), float(fill))
    else:
        if len(fill) != c:
            raise ValueError(f"fill has {len(fill)} values for {c} channels")
        out = x.new_empty((n, c, h + 2 * padding, w + 2 * padding))
        for ch, value in enumerate(fill):
            out[:, ch].fill_(float(value))
    out[:, :, padding : padding + h, padding : padding + w] = x
    return out
