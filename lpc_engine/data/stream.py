"""Streamed training inputs: for data that does not fit in device memory.

The inputs stay in host memory (pinned where there is a GPU). The rest of
an epoch is planned as the same blocks of whole batches that the resident
path gathers (training/epoch.py); DataLoader workers gather each block's
rows from host memory, the loader pins them, and the block goes to the
device without blocking, where the same crops and flips are applied. The
sample order, the draws and the block boundaries are the resident path's,
so the numbers do not change with the placement, and a mid-epoch resume
plans again from its step.
"""

from __future__ import annotations

import torch
from torch import Tensor
from torch.utils.data import DataLoader, Dataset

from lpc_engine.errors import UsageError

# "auto" streams when the inputs as float32 would take more than this share
# of the GPU's free memory: the rest is for the model, activations and the
# optimizer. On the CPU the host is the device, so "auto" stays resident.
STREAM_SHARE = 0.5


def choose_placement(placement: str, input_bytes: int, device: torch.device) -> str:
    """"resident" or "stream" for `placement` ("auto", "resident", "stream")."""
    if placement in ("resident", "stream"):
        return placement
    if placement != "auto":
        raise UsageError(f"data_placement: expected auto, resident or stream, got {placement!r}")
    if device.type != "cuda":
        return "resident"
    free, _ = torch.cuda.mem_get_info(device)
    return "stream" if input_bytes > STREAM_SHARE * free else "resident"


def pinned(x: Tensor, device: torch.device) -> Tensor:
    """`x` in page-locked host memory when it will be copied to a GPU, so the
    copies run without blocking; as it is otherwise."""
    return x.pin_memory() if device.type == "cuda" else x


class _Rows(Dataset):
    """Item `rows` (an index tensor) is x[rows]: one block, gathered in a worker."""

    def __init__(self, x: Tensor) -> None:
        self.x = x

    def __len__(self) -> int:
        return self.x.shape[0]

    def __getitem__(self, rows: Tensor) -> Tensor:
        return self.x[rows]


class BlockStream:
    """The blocks of `rows` (a list of CPU index tensors into x), in order,
    each delivered on `device`."""

    def __init__(self, x: Tensor, rows: list[Tensor], device: torch.device, workers: int) -> None:
        self.device = device
        loader = DataLoader(_Rows(x), batch_size=None, sampler=rows, num_workers=workers,
                            pin_memory=device.type == "cuda",
                            prefetch_factor=2 if workers else None)
        self._blocks = iter(loader)

    def next_block(self) -> Tensor:
        return next(self._blocks).to(self.device, non_blocking=True)
