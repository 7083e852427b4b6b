"""What the robustness measures share: eval mode, the device, argument checks, logits."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch
from torch import Tensor, nn

from lpc_engine.errors import UsageError

# Inputs attacked (or differentiated) per forward pass unless the caller says otherwise.
DEFAULT_BATCH_SIZE = 500


@contextlib.contextmanager
def eval_mode(model: nn.Module) -> Iterator[nn.Module]:
    """Run the block with `model` in eval mode and gradients enabled.

    Every submodule's own `training` flag is restored afterwards (a model in
    train mode with a frozen BatchNorm stays so). Eval mode makes BatchNorm use
    its running statistics, so the samples of a batch are independent and one
    backward pass of a summed output yields per-sample input gradients.
    `enable_grad` lets callers run this under `torch.no_grad()`.
    """
    modes = [(m, m.training) for m in model.modules()]
    model.eval()
    try:
        with torch.enable_grad():
            yield model
    finally:
        for m, training in modes:
            m.training = training


def model_device(model: nn.Module, fallback: torch.device) -> torch.device:
    """The device of the model's first parameter (or buffer), else `fallback`."""
    for t in (*model.parameters(), *model.buffers()):
        return t.device
    return fallback


def check_inputs(x: Tensor, batch_size: int, y: Tensor | None = None) -> None:
    """Refuse an empty or scalar batch, a bad batch size, or labels of another length."""
    if not isinstance(x, Tensor) or x.dim() < 2 or x.shape[0] == 0:
        raise UsageError("x must be a non-empty batch of inputs, shape (N, *input_shape)")
    if isinstance(batch_size, bool) or int(batch_size) != batch_size or batch_size < 1:
        raise UsageError(f"batch_size must be an integer >= 1, got {batch_size!r}")
    if y is not None and (y.dim() != 1 or y.shape[0] != x.shape[0]):
        raise UsageError(f"y must have shape ({x.shape[0]},), got {tuple(y.shape)}")


def logits_of(output: Tensor | tuple) -> Tensor:
    """The (N, K) logits of a forward pass: the tensor itself, or `.logits` of our
    `ModelOutput`, so any logits module (what torchattacks and foolbox take) works."""
    return output if isinstance(output, Tensor) else output.logits


@torch.no_grad()
def predict(model: nn.Module, x: Tensor, batch_size: int) -> Tensor:
    """argmax of the logits, (N,) int64, in batches (call inside `eval_mode`)."""
    return torch.cat([logits_of(model(x[i:i + batch_size])).argmax(1)
                      for i in range(0, x.shape[0], batch_size)])
