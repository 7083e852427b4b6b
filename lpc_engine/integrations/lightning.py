"""LPC in a Lightning training loop: a callback that sets gamma from a
schedule at the start of every epoch and, every N epochs, measures the
paper's latent metrics (Tables I and IV) on clean latents and logs them as
`lpc/<metric>` through the trainer's loggers. The `lightning` extra.

    >>> from lpc_engine.components import GammaSchedule
    >>> from lpc_engine.integrations.lightning import LPCCallback
    >>> schedule = GammaSchedule(gamma_init=1e-2, gamma_factor=1.05, gamma_max=1e6)
    >>> trainer = Trainer(callbacks=[LPCCallback(schedule, loader=clean_train_loader)])

and in the module's training_step::

    out = self(x)  # a ModelOutput (LPCHead), or a (logits, z) tuple
    loss = F.cross_entropy(out.logits, y) + latent_penalty(out.latent, self.gamma)
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Iterable
from typing import Any, Protocol

import torch
from torch import Tensor, nn

from lpc_engine.errors import UsageError
from lpc_engine.metrics import latent_metrics
from lpc_engine.model.head import LPCHead

try:
    import lightning.pytorch as pl
except ImportError:
    raise UsageError("lightning: the lightning package is not installed: "
                     "pip install 'lpc-studio[lightning]'") from None

PREFIX = "lpc/"


class Schedule(Protocol):
    def at(self, epoch: int) -> float:
        """gamma during `epoch`, counted from 1."""


class LPCCallback(pl.Callback):
    """Sets `pl_module.<attribute>` to `schedule.at(epoch)` before each
    training epoch (epochs counted from 1, as in our schedules; Lightning's
    current_epoch counts from 0) and logs it as lpc/gamma. Every
    `every_n_epochs` epochs, and once at the end of fit, it computes
    `latent_metrics` on the latents of `loader` (clean, not augmented,
    training data, as the paper measures collapse; the trainer's own train
    loader when None), in eval mode under no_grad, the module's mode
    restored after, and logs each finite one as lpc/<name>.

    The latents come from `latents(pl_module, x)` when given; else from the
    module's output: `out.latent` (a ModelOutput), or the second element of
    a (logits, z) tuple. NC3 uses the classifier of an LPCHead inside the
    module (or `pl_module.classifier`); NC4 the output's logits. `history`
    holds (epoch, metrics) of every measurement.
    """

    def __init__(self, schedule: Schedule, loader: Iterable | None = None, every_n_epochs: int = 10,
                 attribute: str = "gamma", latents: Callable[[nn.Module, Tensor], Tensor] | None = None):
        if isinstance(every_n_epochs, bool) or not isinstance(every_n_epochs, int) or every_n_epochs < 1:
            raise UsageError(f"LPCCallback: every_n_epochs must be an integer >= 1, got {every_n_epochs!r}")
        if not callable(getattr(schedule, "at", None)):
            raise UsageError("LPCCallback: schedule needs an .at(epoch) method (e.g. GammaSchedule)")
        self.schedule, self.loader, self.every_n_epochs = schedule, loader, every_n_epochs
        self.attribute, self.latents = attribute, latents
        self.history: list[tuple[int, dict[str, float]]] = []
        self._done = 0  # the last completed epoch (1-based)

    def _set_gamma(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> float:
        gamma = float(self.schedule.at(trainer.current_epoch + 1))
        setattr(pl_module, self.attribute, gamma)
        return gamma

    def on_fit_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        # Before the sanity check's validation steps too, which may read gamma.
        self._set_gamma(trainer, pl_module)

    def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        gamma = self._set_gamma(trainer, pl_module)
        _log(trainer, {f"{PREFIX}gamma": gamma, f"{PREFIX}epoch": trainer.current_epoch + 1})

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._done = trainer.current_epoch + 1
        if self._done % self.every_n_epochs == 0:
            self._measure(trainer, pl_module, self._done)

    def on_fit_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        # The final state is always measured, whatever N and however fit stopped.
        measured = self.history[-1][0] if self.history else 0
        if self._done and measured != self._done:
            self._measure(trainer, pl_module, self._done)

    def _measure(self, trainer: pl.Trainer, pl_module: pl.LightningModule, epoch: int) -> None:
        if not trainer.is_global_zero:  # one measurement per run; the loggers are rank 0's anyway
            return
        loader = self.loader if self.loader is not None else trainer.train_dataloader
        if loader is None:
            raise UsageError("LPCCallback: no loader to measure on (pass loader=)")
        z, y, logits = self._collect(pl_module, loader)
        if not bool(torch.isfinite(z).all()):
            warnings.warn(f"LPCCallback: non-finite latents at epoch {epoch}; metrics skipped", stacklevel=2)
            return
        weight = _classifier_weight(pl_module, z.shape[1])
        predictions = logits.argmax(dim=1) if logits is not None else None
        metrics = latent_metrics(z, y, classifier_weight=weight, predictions=predictions)
        self.history.append((epoch, metrics))
        finite = {f"{PREFIX}{k}": v for k, v in metrics.items() if math.isfinite(v)}
        _log(trainer, {**finite, f"{PREFIX}epoch": epoch})

    def _collect(self, pl_module: pl.LightningModule, loader: Iterable) -> tuple[Tensor, Tensor, Tensor | None]:
        """z, y and (when the output has them) logits over `loader`, in eval
        mode under no_grad; the module's mode is restored (batch norm and
        dropout in eval: the clean latents the paper measures)."""
        was_training = pl_module.training
        pl_module.eval()
        zs, ys, logits = [], [], []
        try:
            with torch.no_grad():
                for batch in loader:
                    x, y = batch[0].to(pl_module.device), batch[1]
                    z, out_logits = self._forward(pl_module, x)
                    zs.append(z.detach())
                    ys.append(torch.as_tensor(y).to(z.device))
                    if out_logits is not None:
                        logits.append(out_logits.detach())
        finally:
            pl_module.train(was_training)
        if not zs:
            raise UsageError("LPCCallback: the loader gave no batches")
        all_logits = torch.cat(logits) if len(logits) == len(zs) else None
        return torch.cat(zs).flatten(1), torch.cat(ys), all_logits

    def _forward(self, pl_module: nn.Module, x: Tensor) -> tuple[Tensor, Tensor | None]:
        if self.latents is not None:
            return self.latents(pl_module, x), None
        out = pl_module(x)
        if hasattr(out, "latent"):
            return out.latent, getattr(out, "logits", None)
        if isinstance(out, (tuple, list)) and len(out) >= 2:
            return out[1], out[0]
        raise UsageError("LPCCallback: the module's output has no latents (neither .latent nor a "
                         "(logits, z) tuple); pass latents=lambda module, x: ...")


def _classifier_weight(module: nn.Module, d: int) -> Tensor | None:
    """The last classifier's (C, d) weights, for NC3 (self-duality): an
    LPCHead's, else `module.classifier`'s; None if there is no such layer."""
    heads = [m for m in module.modules() if isinstance(m, LPCHead)]
    layer = heads[0].classifier if heads else getattr(module, "classifier", None)
    weight = getattr(layer, "weight", None)
    if isinstance(weight, Tensor) and weight.dim() == 2 and weight.shape[1] == d:
        return weight.detach()
    return None


def _log(trainer: pl.Trainer, metrics: dict[str, Any]) -> None:
    # Straight to the loggers: self.log is not allowed in on_fit_end, and
    # every logger takes log_metrics (rank 0 only, by Lightning's own guard).
    for logger in trainer.loggers:
        logger.log_metrics(metrics, step=trainer.global_step)
