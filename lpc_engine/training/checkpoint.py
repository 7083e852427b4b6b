"""What a checkpoint holds, so that a resumed run continues exactly (how a
checkpoint file is written, verified and loaded safely: runs/checkpoint_files.py).

Model, optimizer, the last completed epoch, the gamma cap of the `hold`
policy, every random state (global torch, CUDA, and the generator that draws
batch orders and augmentations) and, after a stop in mid-epoch, the epoch's
progress (with its sample order and augmentation draws). Only tensors and plain data: it loads with weights_only=True, and
a file holding anything else is refused before any of it runs. Each file
has its SHA-256 beside it (store.py writes both); a mismatch means damage.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from lpc_engine.training.epoch import EpochProgress

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
                               for losses, logits, y, norms in progress.pending],
                   "draws": None if progress.draws is None else progress.draws.cpu()}
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
    saved = state["optimizer"]
    # The saved groups replace the live ones; keep the fused kernel, whose
    # found_inf skip guards the weights (epoch.py), for checkpoints from before it.
    groups = [{**g, "fused": True, "foreach": None} for g in saved["param_groups"]]
    optimizer.load_state_dict({**saved, "param_groups": groups})
    torch.set_rng_state(state["rng"]["torch"])
    generator.set_state(state["rng"]["generator"])
    if state["rng"]["cuda"] and torch.cuda.is_available():
        # One state a GPU that was visible; a resume may see fewer (or more).
        for i, rng in enumerate(state["rng"]["cuda"][:torch.cuda.device_count()]):
            torch.cuda.set_rng_state(rng, i)
    partial = state.get("partial")
    if not partial:
        return None
    device = next(model.parameters()).device
    pending = [(tuple(t.to(device) for t in losses), logits.to(device), y.to(device),
                norms.to(device)) for losses, logits, y, norms in partial["pending"]]
    draws = partial.get("draws")  # absent before draws were made per epoch: drawn anew
    return EpochProgress(perm=partial["perm"].to(device), step=partial["step"],
                         sums=partial["sums"].to(device), seconds=partial["seconds"],
                         # clear: no checkpoint is written after a non-finite step
                         nonfinite=torch.zeros((), device=device), pending=pending,
                         draws=None if draws is None else draws.to(device))
