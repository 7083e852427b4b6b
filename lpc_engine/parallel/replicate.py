"""The model of a run trained on several processes: DistributedDataParallel
around it, and batch norm over the global batch.

Batch norm normalises with its batch's statistics, so with each process
holding a part of the batch, per-process statistics would train another
model than one process does. Each BatchNorm layer is swapped for one that
uses the global batch's mean and variance: torch's SyncBatchNorm on CUDA
(fused kernels), and `GlobalBatchNorm` here elsewhere (torch's refuses CPU
tensors, which is what the gloo tests run on). Both keep BatchNorm's
parameters and buffers under the same names, so a checkpoint loads into a
plain model, at any number of processes (DESIGN.md's `load_run` included).
"""

from __future__ import annotations

import inspect

import torch
from torch import Tensor, nn
from torch.nn.parallel import DistributedDataParallel

from lpc_engine.parallel.distributed import World, all_reduce_sum

_BATCH_NORMS = (nn.BatchNorm1d, nn.BatchNorm2d)


class GlobalBatchNorm(nn.modules.batchnorm._BatchNorm):
    """BatchNorm over the samples of every process (training mode); plain
    BatchNorm with its running statistics in eval mode.

    Each process reduces its own part to (count, mean, variance) per channel;
    one all-reduce gives every process the table of all parts, combined as
    var = sum_r n_r (var_r + (mean_r - mean)^2) / n: no E[x^2] - E[x]^2
    cancellation. The all-reduce is differentiable (distributed.py), so the
    gradient is that of batch norm over the global batch.
    """

    def __init__(self, like: nn.modules.batchnorm._BatchNorm, world: World):
        super().__init__(like.num_features, like.eps, like.momentum, like.affine,
                         like.track_running_stats)
        self.world = world
        # The same Parameter and buffer objects: an optimizer built on the model keeps them.
        self.weight, self.bias = like.weight, like.bias
        self.running_mean, self.running_var = like.running_mean, like.running_var
        self.num_batches_tracked = like.num_batches_tracked
        self.train(like.training)

    def _check_input_dim(self, x: Tensor) -> None:
        if x.dim() not in (2, 4):
            raise ValueError(f"expected a 2-D or 4-D input, got {x.dim()}-D")

    def forward(self, x: Tensor) -> Tensor:
        if not self.training or self.world.size == 1:
            return super().forward(x)
        dims = [0, *range(2, x.dim())]
        stats = x.float() if x.dtype != torch.float32 else x
        var, mean = torch.var_mean(stats, dim=dims, correction=0)
        count = torch.full((1,), float(stats.numel() // stats.shape[1]), device=x.device)
        row = torch.cat([count, mean, var])[None]  # (1, 1 + 2C)
        w, r = self.world.size, self.world.rank
        table = all_reduce_sum(nn.functional.pad(row, [0, 0, r, w - r - 1]))  # (W, 1 + 2C)
        counts, means, variances = table[:, :1], table[:, 1:1 + self.num_features], table[:, 1 + self.num_features:]
        n = counts.sum()
        mean = (counts * means).sum(0) / n
        var = (counts * (variances + (means - mean) ** 2)).sum(0) / n
        self._track(mean.detach(), var.detach(), n.detach())
        shape = [1, -1] + [1] * (x.dim() - 2)
        y = (stats - mean.view(shape)) * torch.rsqrt(var + self.eps).view(shape)
        if self.affine:
            y = y * self.weight.view(shape) + self.bias.view(shape)
        return y.to(x.dtype)

    @torch.no_grad()
    def _track(self, mean: Tensor, var: Tensor, n: Tensor) -> None:
        """BatchNorm's running statistics (unbiased variance), from the global batch."""
        if not self.track_running_stats:
            return
        self.num_batches_tracked += 1
        momentum = self.momentum if self.momentum is not None else 1.0 / float(self.num_batches_tracked)
        self.running_mean.lerp_(mean, momentum)
        self.running_var.lerp_(var * n / (n - 1), momentum)


def global_batch_norm(model: nn.Module, world: World, device: torch.device) -> nn.Module:
    """Swap `model`'s BatchNorm layers, in place, for ones over the global batch."""
    for name, child in model.named_children():
        if isinstance(child, _BATCH_NORMS):
            setattr(model, name, _synced(child, world, device))
        else:
            global_batch_norm(child, world, device)
    return model


def _synced(bn: nn.modules.batchnorm._BatchNorm, world: World, device: torch.device) -> nn.Module:
    if device.type == "cuda":
        return nn.SyncBatchNorm.convert_sync_batchnorm(bn)
    return GlobalBatchNorm(bn, world)


def replicate(model: nn.Module, world: World, device: torch.device) -> nn.Module:
    """`model` with global batch norm, wrapped for data-parallel training.
    Buffers need no broadcast: every process computes the same statistics."""
    global_batch_norm(model, world, device)
    ids = [device.index] if device.type == "cuda" else None
    return DistributedDataParallel(model, device_ids=ids, gradient_as_bucket_view=True,
                                   **_NO_BUFFER_SYNC)


# torch 2.13 renamed broadcast_buffers to forward_sync_buffers (the old name
# warns there); the project supports torch from 2.6.
_NO_BUFFER_SYNC = ({"forward_sync_buffers": False}
                   if "forward_sync_buffers" in inspect.signature(DistributedDataParallel).parameters
                   else {"broadcast_buffers": False})
