"""The authors' gradient-norm estimate of the local Lipschitz constant of the margin."""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

from lpc_engine.robustness._common import (DEFAULT_BATCH_SIZE, check_inputs, eval_mode, logits_of,
                                         model_device)

# The authors drop per-sample norms that are non-finite or at most this.
_TINY = 1e-9


def lipschitz_estimate(model: nn.Module, x: Tensor, y: Tensor, *,
                       batch_size: int = DEFAULT_BATCH_SIZE) -> dict[str, float]:
    """max and mean over samples of ||grad_x (f_y - max_{j != y} f_j)||_2.

    x: (N, *input_shape), y: (N,) true labels; `model(x)` returns the (N, K)
    logits or a `ModelOutput` with `.logits`; raw logits, eval mode. Section
    II.A of the paper argues that LPC bounds the Lipschitz constant; this is
    the estimate of the authors' later code. Norms that are non-finite or
    <= 1e-9 are dropped (both values are NaN if none is left). In eval mode the
    samples are independent, so one backward pass of the summed margins gives
    every per-sample gradient.

    Example::

        >>> lipschitz_estimate(model, data.x_test[:1000], data.y_test[:1000])
        {'lipschitz_max': 41.7, 'lipschitz_mean': 12.3}
    """
    check_inputs(x, batch_size, y)
    device = model_device(model, x.device)
    x, y = x.detach().to(device), y.to(device)
    with eval_mode(model):
        norms = torch.cat([_margin_grad_norms(model, x[i:i + batch_size], y[i:i + batch_size])
                           for i in range(0, x.shape[0], batch_size)])
    norms = norms[torch.isfinite(norms) & (norms > _TINY)].double()
    if norms.numel() == 0:
        return {"lipschitz_max": math.nan, "lipschitz_mean": math.nan}
    return {"lipschitz_max": float(norms.max()), "lipschitz_mean": float(norms.mean())}


def _margin_grad_norms(model: nn.Module, x: Tensor, y: Tensor) -> Tensor:
    """(n,) ||grad_x (f_y - max_{j != y} f_j)|| for one batch x (n, *S)."""
    x = x.clone().requires_grad_(True)
    logits = logits_of(model(x))
    true = logits.gather(1, y[:, None]).squeeze(1)
    other = logits.scatter(1, y[:, None], -math.inf).amax(dim=1)
    (grad,) = torch.autograd.grad((true - other).sum(), x, allow_unused=True, materialize_grads=True)
    return grad.flatten(1).norm(dim=1).detach()
