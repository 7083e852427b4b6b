"""What a checkpoint holds, so that a resumed run continues exactly.

Model, optimizer, the last completed epoch, the gamma cap of the `hold`
policy, every random state (global torch, CUDA, and the generator that draws
batch orders and augmentations) and, after a stop in mid-epoch, the epoch's
progress. Only tensors and plain data: it loads with weights_only=True.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from .epoch import EpochProgress

FORMAT = 1


def capture(model: nn.Module, optimizer: torch.optim.Optimizer, generator: torch.Generator,
            epoch: int, gamma: float, gamma_hold: float | None, watch: dict[str, Any],
            progress: EpochProgress | None, config: dict[str, Any]) -> dict[str, Any]:
    partial = None
    if progress is not None:  # even at step 0: its order was already drawn
        # The per-step values stay unfolded so that the resumed epoch sums
        # them in the same order as an uninterrupted one (bit-exact rows).
        partial = {"perm": progress.perm.cpu(), "step": progress.step,
                   "sums": progress.sums.cpu(), "seconds": progress.seconds,
                   "pending": [[list(losses), logits.cpu(), y.cpu(), norms.cpu()]
                               for losses, logits, y, norms in progress.pending]}
    return {
        "format": FORMAT,
        "epoch": epoch,
        "gamma": gamma,
        "gamma_hold": gamma_hold,
        "model": model.state_dict(),
        "optimizer": optimizer.state_dict(),
        "rng": {
            "torch": torch.get_rng_state(),
            "generator": generator.get_state(),
            "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        },
        "watch": watch,
        "partial": partial,
        "config": config,
    }


def restore(state: dict[str, Any], model: nn.Module, optimizer: torch.optim.Optimizer,
            generator: torch.Generator) -> EpochProgress | None:
    """Load `state` into the live objects; the mid-epoch progress if any."""
    model.load_state_dict(state["model"])
    optimizer.load_state_dict(state["optimizer"])
    torch.set_rng_state(state["rng"]["torch"])
    generator.set_state(state["rng"]["generator"])
    if state["rng"]["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["rng"]["cuda"])
    partial = state.get("partial")
    if not partial:
        return None
    device = next(model.parameters()).device
    pending = [(tuple(t.to(device) for t in losses), logits.to(device), y.to(device),
                norms.to(device)) for losses, logits, y, norms in partial["pending"]]
    return EpochProgress(perm=partial["perm"].to(device), step=partial["step"],
                         sums=partial["sums"].to(device), seconds=partial["seconds"],
                         pending=pending)
