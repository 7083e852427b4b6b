"""How a training step runs the model: precision, memory format, compilation.

None of this changes what is trained, only how fast (the fast path of the
speed issue; docs/PERFORMANCE.md):

- `precision = "bf16"`: the forward pass under `torch.autocast(bfloat16)`.
  Weights, gradients and AdamW's moments stay fp32, so no loss scaling is
  needed (bf16 has fp32's exponent range). The outputs are cast back to fp32
  before the loss: the penalty gamma * ||z||^2 and the running sums keep
  fp32's 24-bit mantissa instead of bf16's 8 (eq. 1 at z ~ 1e-4 and gamma
  ~ 1e6 is a product of extremes), at the cost of casting (B, d) tensors.
  Allowed on the CPU too (not benchmarked there); it is meant for GPUs.
- channels_last on CUDA for conv backbones: cuDNN's fastest convolutions
  (tensor cores) want NHWC. On the CPU it is left alone.
- Denormals flushed to zero on the CPU (`flush_denormals`): at high gamma,
  z ~ 1e-4 made float32 denormals and CPU epochs 25-30x slower.
- Several processes (`lpc run --nproc N`): the steps call the model
  through DistributedDataParallel, with batch norm over the global batch
  (replicate.py); the plain module is the same object, with the same weights.
- `compile = True`: `torch.compile` of the model for the training steps
  only. The session keeps the plain module for checkpoints (state_dict keys
  without `_orig_mod.`), evaluation, metrics and DeepFool; both share the
  same parameters, so there is one set of weights.
"""

from __future__ import annotations

import ctypes
import os
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from lpc_engine.parallel.distributed import World
from lpc_engine.model.network import ModelOutput
from lpc_engine.parallel.replicate import replicate


@dataclass(frozen=True)
class StepForward:
    """`forward(x)`: the training step's forward pass, in fp32 out."""

    module: nn.Module  # the model, or its DDP / torch.compile wrapper (same parameters)
    device_type: str  # "cpu" or "cuda", for autocast
    autocast: torch.dtype | None  # None: plain fp32
    channels_last: bool  # convert 4-D batches to NHWC before the forward pass

    def __call__(self, x: Tensor) -> ModelOutput:
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)  # no-op when already NHWC
        if self.autocast is None:
            return self.module(x)
        with torch.autocast(self.device_type, dtype=self.autocast):
            out = self.module(x)
        return ModelOutput(*(t.float() for t in out))


def prepare_forward(model: nn.Module, device: torch.device, precision: str,
                    compile_model: bool, world: World = World()) -> StepForward:
    """Set `model` up for training on `device` (channels_last in place on
    CUDA; global batch norm on several processes) and return the forward
    pass the steps call."""
    channels_last = device.type == "cuda" and any(
        isinstance(m, nn.Conv2d) for m in model.modules())
    if channels_last:
        model.to(memory_format=torch.channels_last)
    module = replicate(model, world, device) if world.size > 1 else model
    module = torch.compile(module) if compile_model else module
    dtype = torch.bfloat16 if precision == "bf16" else None
    return StepForward(module, device.type, dtype, channels_last)


def flush_denormals() -> None:
    """Flush float32 denormals to zero in this thread and its OpenMP workers.

    `torch.set_flush_denormal` sets the calling thread's MXCSR only. OpenMP
    workers started afterwards inherit it (POSIX threads inherit the
    floating-point environment), which covers `lpc run` and a BackgroundRun's
    fresh thread; but in a notebook that ran torch ops before `train()`, the
    pool already exists and its workers kept denormals: measured on 2
    threads, half the outputs of an elementwise op and of a matmul stayed
    denormal. So each thread of the current team is asked to set it too,
    through libgomp's own entry point (a no-op where torch has no libgomp).
    """
    torch.set_flush_denormal(True)
    gomp = _libgomp()
    if gomp is not None and torch.get_num_threads() > 1:
        gomp.GOMP_parallel(ctypes.cast(_SET_FLUSH, ctypes.c_void_p), None,
                           torch.get_num_threads(), 0)


def _set_flush(_: int | None) -> None:
    torch.set_flush_denormal(True)


# ctypes takes the GIL in each worker (GOMP_parallel runs with it released).
_SET_FLUSH = ctypes.CFUNCTYPE(None, ctypes.c_void_p)(_set_flush)


def _libgomp() -> ctypes.CDLL | None:
    """torch's own OpenMP runtime, if it is libgomp (Linux wheels); not
    another copy (scikit-learn bundles one), whose team is not torch's."""
    torch_dir = os.path.dirname(torch.__file__)
    try:
        with open("/proc/self/maps", encoding="utf-8") as maps:
            paths = [line.split()[-1] for line in maps if "libgomp" in line]
    except OSError:
        return None
    path = next((p for p in paths if p.startswith(torch_dir)), None)
    if path is None:
        return None
    gomp = ctypes.CDLL(path)
    gomp.GOMP_parallel.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_uint, ctypes.c_uint]
    return gomp
