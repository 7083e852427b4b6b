"""Watching for the failure DESIGN.md describes: classes merging at the origin.

When gamma outgrows what the classifier weights can balance, every latent is
pulled to the origin, accuracy falls toward chance and never recovers (seen
on digits with the paper's schedule to 1e6). The sign: training accuracy has
lost half of its margin over chance while the mean latent norm has fallen
below half of its value at the best epoch.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass


@dataclass
class MergeWatch:
    num_classes: int
    best_train_acc: float = 0.0
    norm_at_best: float = 0.0
    fired: bool = False  # alert once per episode, re-armed by a new best

    def update(self, train_acc: float, norm_mean: float) -> bool:
        """Feed one epoch; True the first epoch the merge is seen."""
        if train_acc > self.best_train_acc:
            self.best_train_acc, self.norm_at_best, self.fired = train_acc, norm_mean, False
            return False
        chance = 1.0 / self.num_classes
        lost_half = train_acc < chance + 0.5 * (self.best_train_acc - chance)
        shrunk = norm_mean < 0.5 * self.norm_at_best
        merging = self.best_train_acc >= 2 * chance and lost_half and shrunk
        if merging and not self.fired:
            self.fired = True
            return True
        return False

    def state(self) -> dict[str, float | bool]:
        return asdict(self)
