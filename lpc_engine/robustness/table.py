"""The paper's Table II row for one model: DeepFool robustness and test accuracy."""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor, nn

from lpc_engine.errors import UsageError
from lpc_engine.robustness._common import DEFAULT_BATCH_SIZE, check_inputs, eval_mode, model_device, predict
from lpc_engine.robustness.attack import deepfool


def robustness_table(model: nn.Module, x: Tensor, y: Tensor, *, samples: int = 1000, seed: int = 0,
                     **deepfool_kwargs: Any) -> dict[str, float]:
    """DeepFool on `samples` random inputs of (x (N, *S), y (N,)), and accuracy on all N.

    The inputs are drawn without replacement by a CPU generator seeded with
    `seed` (all N when samples >= N), so a seed gives the same inputs on any
    device. Keys (DESIGN.md contracts):

    - robustness_mean: mean ||r|| / ||x|| over every attacked input,
      misclassified ones included as in the authors' code (Table II);
    - robustness_median: its median (the mean of the two middle values for even n);
    - robustness_correct_mean: the mean over correctly classified inputs only
      (NaN when none is);
    - deepfool_converged: the fraction whose label flipped within max_iter;
    - test_acc: accuracy on the full x, y;
    - samples: how many inputs were attacked.

    `deepfool_kwargs` go to `deepfool` (num_candidates, overshoot, max_iter,
    step_eps, batch_size).

    Example::

        >>> robustness_table(model, data.x_test, data.y_test, samples=1000, seed=0)
        {'robustness_mean': 0.0213, 'robustness_median': 0.0187, ...}
    """
    if isinstance(samples, bool) or not isinstance(samples, int) or samples < 1:
        raise UsageError(f"samples must be an integer >= 1, got {samples!r}")
    batch_size = deepfool_kwargs.get("batch_size", DEFAULT_BATCH_SIZE)
    check_inputs(x, batch_size, y)
    device = model_device(model, x.device)
    x, y = x.detach().to(device), y.to(device)
    with eval_mode(model):
        test_acc = (predict(model, x, batch_size) == y).double().mean()
    generator = torch.Generator().manual_seed(int(seed))
    idx = torch.randperm(x.shape[0], generator=generator)[:samples].to(device)
    res = deepfool(model, x[idx], **deepfool_kwargs)
    ratio = res.ratio.double()
    correct = ratio[res.label == y[idx]]
    return {
        "robustness_mean": float(ratio.mean()),
        "robustness_median": float(ratio.quantile(0.5)),
        "robustness_correct_mean": float(correct.mean()) if correct.numel() else math.nan,
        "deepfool_converged": float(res.converged.double().mean()),
        "test_acc": float(test_acc),
        "samples": int(idx.numel()),
    }
