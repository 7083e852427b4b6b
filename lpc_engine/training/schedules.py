"""Gamma and learning-rate schedules: pure functions of the epoch.

Epochs are counted from 1, as in the run's events: `gamma_at(1, ...)` is the
gamma used during the first epoch.
"""

from __future__ import annotations

import dataclasses
import math

from lpc_engine.config import GammaConfig, OptimConfig, RunConfig, validate
from lpc_engine.errors import ConfigError


def gamma_at(epoch: int, g: GammaConfig, epochs: int) -> float:
    """Weight of the latent penalty during `epoch` (eq. 1, appendix C).

    exponential: gamma_init * gamma_factor^k with k = (epoch-1) // step,
        capped at gamma_max (paper: 1e-2 x1.05 every epoch to 1e6, so the cap
        is first used at epoch 379).
    dual-exponential (the authors' latest code): the same growth up to
        gamma_switch, then gamma_factor_late every gamma_step_epochs_late
        epochs up to gamma_max (their CIFAR-10 values: 2x every 5 epochs
        from 1e-4 to 1e3, then 1.25x every 5 epochs to 1e6).
    linear / cosine: from gamma_init to gamma_max over gamma_ramp_epochs
        (0 = half the run), then constant.
    constant: gamma_max from the first epoch.
    """
    n = epoch - 1
    if g.gamma_schedule == "constant":
        return g.gamma_max
    if g.gamma_schedule == "exponential":
        return _capped_exp(g.gamma_init, g.gamma_factor, n // g.gamma_step_epochs, g.gamma_max)
    if g.gamma_schedule == "dual-exponential":
        return _dual_exp(n, g)
    ramp = g.gamma_ramp_epochs or max(1, epochs // 2)
    t = min(n / ramp, 1.0)
    if g.gamma_schedule == "cosine":
        t = (1.0 - math.cos(math.pi * t)) / 2.0
    return g.gamma_init + (g.gamma_max - g.gamma_init) * t


def _capped_exp(start: float, factor: float, steps: int, cap: float) -> float:
    if start <= 0.0 or start >= cap:
        return min(start, cap)
    try:
        return min(start * factor ** steps, cap)
    except OverflowError:  # factor^steps beyond float range: long past the cap
        return cap


def _steps_to_reach(start: float, factor: float, target: float) -> int | None:
    """Growth steps from `start` until `target` is reached; None if never."""
    if start >= target:
        return 0
    if start <= 0.0 or factor <= 1.0:
        return None
    return math.ceil(math.log(target / start) / math.log(factor) - 1e-12)


def _dual_exp(n: int, g: GammaConfig) -> float:
    switch = min(g.gamma_switch, g.gamma_max)
    early_steps = _steps_to_reach(g.gamma_init, g.gamma_factor, switch)
    if early_steps is None or n < early_steps * g.gamma_step_epochs:
        return _capped_exp(g.gamma_init, g.gamma_factor, n // g.gamma_step_epochs, switch)
    late_n = n - early_steps * g.gamma_step_epochs
    return _capped_exp(switch, g.gamma_factor_late, late_n // g.gamma_step_epochs_late, g.gamma_max)


def epoch_reaching_max(g: GammaConfig, epochs: int) -> int | None:
    """First epoch at which gamma equals gamma_max, or None within `epochs`."""
    for epoch in range(1, epochs + 1):
        if gamma_at(epoch, g, epochs) >= g.gamma_max:
            return epoch
    return None


def lr_at(epoch: int, o: OptimConfig, epochs: int) -> float:
    """Learning rate of every parameter but the last classifier's.

    halving: the paper's "from epoch 250, halved every 50 epochs", counted as
        the authors' code does (a StepLR stepped after each epoch past 250):
        epochs 301-350 run at lr/2, ..., 751-800 at lr/2^10.
    cosine: the authors' later code anneals to zero from lr_decay_start to the
        last epoch.
    The last classifier keeps its own LR throughout (appendix C; classifier_lr,
    by default lr).
    """
    if o.lr_schedule == "constant" or epoch <= o.lr_decay_start:
        return o.lr
    steps = epoch - 1 - o.lr_decay_start  # scheduler steps taken before this epoch
    if o.lr_schedule == "halving":
        return o.lr * 0.5 ** (steps // o.lr_halving_every)
    span = max(1, epochs - o.lr_decay_start)
    return o.lr * (1.0 + math.cos(math.pi * min(steps / span, 1.0))) / 2.0


def ramp_progress(epoch: int, ramp_epochs: int) -> float:
    """Fraction of the ArcFace/CosFace margin and scale ramps done during
    `epoch`, in [0, 1] (appendix C: margins and scales grow over training;
    the authors' code adds 1 to the scale each epoch, 16 -> 64 in 48 epochs)."""
    return min(max((epoch - 1) / ramp_epochs, 0.0), 1.0)


class GammaSchedule:
    """The gamma schedule as an object, from the config's own fields
    (`GammaConfig`: gamma_schedule, gamma_init, gamma_factor, ...), for a
    training loop of one's own. `.at(epoch)` is pure; epochs count from 1.

    `epochs` is the run's length, needed only by the linear and cosine
    ramps when gamma_ramp_epochs is 0 (half the run). Bad values raise
    ConfigError, as they would in a config file.

    Example::

        >>> s = GammaSchedule(gamma_init=1e-2, gamma_factor=1.05, gamma_max=1e6)
        >>> s.at(1), round(s.at(11), 6)
        (0.01, 0.016289)
    """

    def __init__(self, epochs: int | None = None, **fields: float | int | str) -> None:
        unknown = sorted(set(fields) - {f.name for f in dataclasses.fields(GammaConfig)})
        if unknown:
            raise ConfigError(f"GammaSchedule: unknown field(s) {', '.join(unknown)}; "
                              "the fields are GammaConfig's")
        self.config = GammaConfig(**fields)
        validate(RunConfig(gamma=self.config))  # the config file's own checks: ranges, gamma_max >= gamma_init, ...
        self.epochs = epochs

    @classmethod
    def from_config(cls, g: GammaConfig, epochs: int | None = None) -> GammaSchedule:
        return cls(epochs=epochs, **dataclasses.asdict(g))

    def at(self, epoch: int) -> float:
        """gamma during `epoch` (1-based)."""
        if isinstance(epoch, bool) or int(epoch) != epoch or epoch < 1:
            raise ConfigError(f"GammaSchedule.at: epoch must be an integer >= 1, got {epoch!r}")
        needs_length = self.config.gamma_schedule in ("linear", "cosine") and not self.config.gamma_ramp_epochs
        if needs_length and self.epochs is None:
            raise ConfigError("GammaSchedule: the linear and cosine ramps need epochs= (or gamma_ramp_epochs)")
        return gamma_at(int(epoch), self.config, self.epochs or 0)

    def __repr__(self) -> str:
        return f"GammaSchedule({self.config})"
