"""One training epoch and one evaluation pass, with no host sync per step.

The step loop accumulates its scalars in one device tensor and the caller
reads it once an epoch (nanoGPT/airbench style): a `.item()` per step would
stall a GPU on every batch.

A non-finite loss must never reach the weights, and checking it on the host
would be that sync. So the flag stays on the device: the fused AdamW kernel
skips its whole update (weights, moments, step count) when the optimizer's
`found_inf` tensor is 1, the hook GradScaler uses, read inside the kernel.
Once set, the flag stays set for the rest of the epoch, so the weights stay
those of the last good step; the epoch's NaN loss then ends the run
(train.py). Only the loss is checked: testing every gradient too cost 8% of
a digits step on the CPU (torch._amp_foreach_non_finite_check_and_unscale_),
the loss check 1%.
"""

from __future__ import annotations

import dataclasses
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
from torch import Tensor, nn

from lpc_engine.data.augment import apply_crops, draw_crops
from lpc_engine.data.datasets import TensorData
from lpc_engine.data.stream import BlockStream
from lpc_engine.parallel.distributed import AGREE_STEPS, World
from lpc_engine.model.network import ModelOutput
from lpc_engine.training.objective import EpochObjective, compute_loss

# Samples are gathered and augmented a block at a time, at most this many
# values (64 MB of float32: all of digits, 42 batches of CIFAR at 128), and
# each step slices its batch out: two views a step where a per-batch gather,
# pad and crop took ~10 small kernels, 9% of a digits MLP step on the CPU
# (bench/train_bench.py). Every draw is made at the start of the epoch, so
# the batches do not depend on where the blocks begin (a mid-epoch resume
# starts one at its step).
BLOCK_FLOATS = 1 << 24

# Columns of the running sums (each weighted by the batch size but `n`).
LOSS, CE, PENALTY, CORRECT, NORM, NORM_SQ, N = range(7)
N_SUMS = 7


@dataclass
class EpochProgress:
    """Where an epoch stands: enough to stop mid-epoch and resume exactly."""

    perm: Tensor  # the epoch's sample order
    step: int  # batches done
    sums: Tensor  # (N_SUMS,) running sums on the device, up to the last fold()
    seconds: float  # wall time spent on the epoch so far
    nonfinite: Tensor  # () float on the device: 1.0 once a step's loss was not finite
    pending: list = field(default_factory=list)  # per-step tensors not yet folded
    draws: Tensor | None = None  # (N, 3) crop offsets and flip bit of perm[i] (augment.draw_crops)
    block: Block | None = None  # augmented samples the next steps slice
    stream: BlockStream | None = None  # streamed data: the epoch's remaining blocks (data/stream.py)

    def fold(self) -> Tensor:
        """Fold the pending per-step values into `sums` and return them: a
        few kernels an epoch, where summing every step costs a dozen a step."""
        if self.pending:
            losses, logits, labels, norms = zip(*self.pending)
            sums_dtype, device = self.sums.dtype, self.sums.device
            sizes = torch.tensor([y.numel() for y in labels], dtype=sums_dtype, device=device)
            weighted = (torch.stack([torch.stack(x) for x in losses]).to(sums_dtype)
                        * sizes[:, None]).sum(0)
            correct = (torch.cat(logits).argmax(dim=1) == torch.cat(labels)).sum()
            norms = torch.cat(norms).to(sums_dtype)
            self.sums += torch.cat([weighted, torch.stack([
                correct.to(sums_dtype), norms.sum(), (norms * norms).sum(), sizes.sum()])])
            self.pending.clear()
        return self.sums


def start_epoch(data: TensorData, generator: torch.Generator, augment: bool = True,
                world: World = World()) -> EpochProgress:
    """The epoch's sample order and, with `augment`, every sample's crop
    and flip, all drawn now from `generator`. On several processes, rank
    0's draws: every process draws the same from the same seed, but CUDA's
    random kernels size their grids by the GPU, so different GPU models
    could draw differently."""
    n, device = data.x_train.shape[0], data.device
    perm = world.same_(torch.randperm(n, generator=generator, device=device))
    draws = _draws(data, generator) if augment else None
    sums = torch.zeros(N_SUMS, dtype=torch.float64, device=device)
    return EpochProgress(perm=perm, step=0, sums=sums, seconds=0.0,
                         nonfinite=torch.zeros((), device=device),
                         draws=None if draws is None else world.same_(draws))


def _draws(data: TensorData, generator: torch.Generator) -> Tensor | None:
    """Every training sample's crop and flip; None if the data has none."""
    if data.x_train.dim() != 4 or not (data.crop_padding or data.flip):
        return None
    return draw_crops(data.x_train.shape[0], data.crop_padding, data.flip, generator, data.device)


@dataclass
class Block:
    """This process's samples of steps first..first+len(starts)-2, gathered
    and augmented: step first+i is rows starts[i]:starts[i+1] of x and y."""

    first: int
    starts: list[int]
    x: Tensor
    y: Tensor

    def holds(self, step: int) -> bool:
        return self.first <= step < self.first + len(self.starts) - 1


def num_steps(n: int, batch_size: int, processes: int = 1) -> int:
    """Batches per epoch. A last batch of fewer than 2 samples a process is
    dropped: batch norm cannot normalise a single sample in training mode
    (and on N processes every process needs a part of every batch)."""
    steps = -(-n // batch_size)
    return steps - 1 if 0 < n % batch_size < 2 * processes and steps > 1 else steps


def global_progress(progress: EpochProgress, world: World) -> EpochProgress:
    """`progress` as one process would hold it, for a checkpoint that loads
    at any number of processes: the sums over every process (a collective:
    every process calls it). Alone, `progress` itself."""
    if world.size == 1:
        return progress
    sums = world.sum_(progress.fold().clone())
    return dataclasses.replace(progress, sums=sums, pending=[], block=None, stream=None)


def local_progress(progress: EpochProgress, world: World) -> EpochProgress:
    """The part of a checkpoint's `progress` this process carries: its sums
    go to rank 0 alone, so that summing over processes counts them once."""
    if world.is_main:
        return progress
    return dataclasses.replace(progress, sums=torch.zeros_like(progress.sums), pending=[])


def train_steps(model: nn.Module, optimizer: torch.optim.Optimizer, data: TensorData,
                progress: EpochProgress, obj: EpochObjective, batch_size: int, augment: bool,
                generator: torch.Generator, stop: threading.Event | None = None,
                pause: threading.Event | None = None, deadline: float | None = None,
                forward: Callable[[Tensor], ModelOutput] | None = None,
                world: World = World(), workers: int = 0) -> bool:
    """Run the remaining steps of the epoch; False if stopped, or if
    time.monotonic() passed `deadline` (a timed checkpoint), before the end.
    `optimizer` must be a fused AdamW (the non-finite guard above).
    `forward` runs `model` (bf16, compiled, DDP: execution.py); default `model`.
    `workers`: DataLoader workers that gather streamed data (data/stream.py).
    On several processes (`world`), this one trains its part of each batch."""
    model.train()
    forward = forward or model
    if augment and progress.draws is None:  # resumed from a checkpoint that predates them
        progress.draws = _draws(data, generator)
    optimizer.found_inf = progress.nonfinite  # read by the fused kernel each step
    n = progress.perm.numel()
    total, first = num_steps(n, batch_size, world.size), progress.step
    while progress.step < total:
        while pause is not None and pause.is_set() and not _is_set(stop):
            time.sleep(0.05)
        if _interrupted(progress.step, first, stop, deadline, world):
            return False
        x, y = _batch(data, progress, batch_size, total, world, workers)
        out = forward(x)
        a = progress.step * batch_size
        share = world.share(a, min(a + batch_size, n))
        loss, ce, penalty = compute_loss(out, y, obj, share)
        optimizer.zero_grad(set_to_none=True)
        (loss if share is None else loss * share.weight).backward()
        # loss - loss is 0 if finite and NaN if not, and NaN counts as true:
        # the flag stays 0.0 or 1.0, in 2 kernels where isfinite took 3 (3x the time).
        progress.nonfinite.logical_or_(loss.detach() - loss.detach())
        world.any_(progress.nonfinite)  # every process skips the step, or none
        optimizer.step()
        _accumulate(progress, out.logits, out.latent, y, loss, ce, penalty)
        progress.step += 1
    return True


def _interrupted(step: int, first: int, stop: threading.Event | None, deadline: float | None,
                 world: World) -> bool:
    """Whether to leave the epoch before `step`: a stop request, or the
    deadline passed (one step a call at least, however short the interval).
    On several processes rank 0 decides, every AGREE_STEPS steps, and a
    stop it decided is set on every process."""
    due = deadline is not None and step > first and time.monotonic() >= deadline
    if world.size == 1:
        return _is_set(stop) or due
    if step == first or step % AGREE_STEPS:
        return False
    halt, due = world.agree_stop(stop, due)
    return halt or due


def _batch(data: TensorData, progress: EpochProgress, batch_size: int, total: int,
           world: World, workers: int) -> tuple[Tensor, Tensor]:
    """This process's part of step `progress.step`'s batch: a view into the
    block of gathered and augmented samples that holds it, the next block
    made when it is reached."""
    block = progress.block
    if block is None or not block.holds(progress.step):
        block = progress.block = _block(data, progress, progress.step, total, batch_size, world, workers)
    i = progress.step - block.first
    a, b = block.starts[i], block.starts[i + 1]
    return block.x[a:b], block.y[a:b]


@dataclass
class _Plan:
    """Which samples a block holds: steps first..first+len(starts)-2, the
    rows `rows` of the epoch's sample order (a slice alone, else indices)."""

    first: int
    starts: list[int]
    rows: slice | Tensor


def _plan(data: TensorData, progress: EpochProgress, first: int, total: int,
          batch_size: int, world: World) -> _Plan:
    """This process's samples of steps first.. up to BLOCK_FLOATS values
    (whole batches, at least one)."""
    per_batch = data.x_train[0].numel() * batch_size
    steps = range(first, min(total, first + max(1, BLOCK_FLOATS // per_batch)))
    n = progress.perm.numel()
    parts = [world.shard(s * batch_size, min((s + 1) * batch_size, n)) for s in steps]
    starts = [0]
    for lo, hi in parts:
        starts.append(starts[-1] + hi - lo)
    if world.size == 1:  # one contiguous run of the sample order: views, no gather
        return _Plan(first, starts, slice(parts[0][0], parts[-1][1]))
    return _Plan(first, starts, torch.cat([torch.arange(lo, hi) for lo, hi in parts]).to(progress.perm.device))


def _block(data: TensorData, progress: EpochProgress, first: int, total: int,
           batch_size: int, world: World, workers: int) -> Block:
    """The block of steps first.., gathered and augmented in one go: from
    the device, or, for streamed data, the stream's next block."""
    plan = _plan(data, progress, first, total, batch_size, world)
    idx = progress.perm[plan.rows]
    if data.streamed:
        if progress.stream is None:  # the epoch's first block (or the first after a resume)
            progress.stream = _stream(data, progress, first, total, batch_size, world, workers)
        x = progress.stream.next_block()
    else:
        x = data.x_train[idx]
    if progress.draws is not None:
        x = apply_crops(x, data.crop_padding, data.flip, progress.draws[plan.rows])
    return Block(first, plan.starts, x, data.y_train[idx])


def _stream(data: TensorData, progress: EpochProgress, first: int, total: int, batch_size: int,
            world: World, workers: int) -> BlockStream:
    """The blocks of steps first..total, planned as `_block` plans them, for
    DataLoader workers to gather from host memory."""
    order = progress.perm.cpu()
    rows = []
    while first < total:
        plan = _plan(data, progress, first, total, batch_size, world)
        rows.append(order[plan.rows if isinstance(plan.rows, slice) else plan.rows.cpu()])
        first += len(plan.starts) - 1
    return BlockStream(data.x_train, rows, data.device, workers)


def _is_set(event: threading.Event | None) -> bool:
    return event is not None and event.is_set()


@torch.no_grad()
def _accumulate(progress: EpochProgress, logits: Tensor, latent: Tensor, y: Tensor,
                loss: Tensor, ce: Tensor, penalty: Tensor) -> None:
    """Keep this step's values on the device (one kernel: the latent norms);
    `fold()` reduces them once an epoch."""
    losses = (loss.detach(), ce.detach(), penalty.detach())
    progress.pending.append((losses, logits.detach(), y, latent.detach().norm(dim=1)))


def epoch_scalars(progress: EpochProgress, world: World = World()) -> dict[str, float]:
    """Means over the epoch's samples (of every process), read from the device once."""
    s = world.sum_(progress.fold().clone()).tolist()
    n = max(s[N], 1.0)
    norm_mean = s[NORM] / n
    norm_var = max(s[NORM_SQ] / n - norm_mean ** 2, 0.0)
    return {
        "loss": s[LOSS] / n, "ce": s[CE] / n, "penalty": s[PENALTY] / n,
        "train_acc": s[CORRECT] / n, "latent_norm_mean": norm_mean,
        "latent_norm_cov": norm_var ** 0.5 / norm_mean if norm_mean > 0 else float("nan"),
    }


@torch.no_grad()
def clean_latents(model: nn.Module, x: Tensor, batch_size: int = 2048) -> tuple[Tensor, Tensor]:
    """Latents z (N, d) and predicted labels (N,), on the model's device, of
    un-augmented inputs x (on any device), in eval mode (the paper measures
    collapse on clean latents); the model's mode is restored."""
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    latents, predictions = [], []
    for i in range(0, x.shape[0], batch_size):  # streamed inputs come from host memory a batch at a time
        out = model(x[i:i + batch_size].to(device, non_blocking=True))
        latents.append(out.latent.float())
        predictions.append(out.logits.argmax(dim=1))
    model.train(was_training)
    return torch.cat(latents), torch.cat(predictions)


def accuracy(model: nn.Module, x: Tensor, y: Tensor) -> float:
    """Fraction of (x, y) classified correctly; restores the model's mode."""
    _, predictions = clean_latents(model, x)
    return (predictions == y).sum().item() / max(x.shape[0], 1)
