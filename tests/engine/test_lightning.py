"""LPCCallback in a real Lightning fit (CPU, a few epochs on synthetic
tensors): gamma follows the schedule epoch by epoch, and the lpc/ metrics
reach the logger at the measured epochs and at the end of fit."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

pl = pytest.importorskip("lightning.pytorch")

from lpc_engine.components import GammaSchedule, LPCHead, latent_penalty  # noqa: E402
from lpc_engine.errors import UsageError  # noqa: E402
from lpc_engine.integrations.lightning import LPCCallback  # noqa: E402
from lpc_engine.metrics import METRIC_NAMES  # noqa: E402

EPOCHS = 3


class MemoryLogger(pl.loggers.Logger):
    """Keeps every log_metrics call: (step, metrics)."""

    def __init__(self):
        super().__init__()
        self.rows: list[tuple[int, dict]] = []

    @property
    def name(self) -> str:
        return "memory"

    @property
    def version(self) -> int:
        return 0

    def log_hyperparams(self, params, *args, **kwargs) -> None:
        pass

    def log_metrics(self, metrics, step=None) -> None:
        self.rows.append((step, dict(metrics)))


class Tiny(pl.LightningModule):
    """A backbone and our head; records the gamma each training step saw."""

    def __init__(self, tuple_output: bool = False):
        super().__init__()
        self.body = nn.Sequential(nn.Linear(8, 32), nn.ReLU())
        self.head = LPCHead(32, num_classes=4, latent_dim=4)
        self.tuple_output = tuple_output
        self.gamma = -1.0
        self.seen: list[tuple[int, float]] = []

    def forward(self, x):
        out = self.head(self.body(x))
        return (out.logits, out.latent) if self.tuple_output else out

    def training_step(self, batch, batch_idx):
        x, y = batch
        logits, z = self(x)[:2]
        self.seen.append((self.current_epoch + 1, self.gamma))
        return F.cross_entropy(logits, y) + latent_penalty(z, self.gamma)

    def configure_optimizers(self):
        return torch.optim.Adam(self.parameters(), lr=1e-2)


def loader(shuffle: bool = False) -> DataLoader:
    g = torch.Generator().manual_seed(0)
    y = torch.arange(64) % 4
    x = torch.randn(64, 8, generator=g) + 2.0 * F.one_hot(y, 8).float()
    return DataLoader(TensorDataset(x, y), batch_size=16, shuffle=shuffle, generator=g)


def fit(module: Tiny, callback: LPCCallback) -> MemoryLogger:
    torch.manual_seed(0)
    logger = MemoryLogger()
    trainer = pl.Trainer(max_epochs=EPOCHS, logger=logger, callbacks=[callback], accelerator="cpu",
                         devices=1, enable_checkpointing=False, enable_progress_bar=False,
                         enable_model_summary=False, log_every_n_steps=1)
    trainer.fit(module, loader(shuffle=True))
    return logger


def lpc_rows(logger: MemoryLogger, key: str) -> list[tuple[int, float]]:
    return [(row["lpc/epoch"], row[key]) for _, row in logger.rows if key in row]


def test_gamma_follows_the_schedule_and_metrics_reach_the_logger() -> None:
    schedule = GammaSchedule(gamma_init=0.01, gamma_factor=2.0, gamma_max=1.0)
    module = Tiny()
    logger = fit(module, LPCCallback(schedule, loader=loader(), every_n_epochs=2))
    expected = {e: schedule.at(e) for e in range(1, EPOCHS + 1)}
    assert {e for e, _ in module.seen} == set(expected)
    assert all(gamma == expected[e] for e, gamma in module.seen)
    assert lpc_rows(logger, "lpc/gamma") == list(expected.items())
    # every 2 epochs, and the end of fit: epochs 2 and 3
    measured = lpc_rows(logger, "lpc/separation_ratio")
    assert [e for e, _ in measured] == [2, 3] and all(v > 0 for _, v in measured)
    last = dict(logger.rows[-1][1])
    assert {f"lpc/{n}" for n in ("self_duality", "ncc_mismatch", "nc1")} <= set(last)  # NC3 and NC4 found
    assert all(math.isfinite(v) for v in last.values())
    assert set(last) <= {f"lpc/{n}" for n in METRIC_NAMES} | {"lpc/epoch"}
    assert module.training  # the module's mode is back


def test_a_tuple_output_and_a_latents_function_work_too() -> None:
    schedule = GammaSchedule(gamma_init=0.1, gamma_factor=1.0, gamma_max=0.1)
    callback = LPCCallback(schedule, every_n_epochs=5)  # no loader: the trainer's own
    fit(Tiny(tuple_output=True), callback)
    assert [e for e, _ in callback.history] == [EPOCHS]  # only at the end of fit
    assert math.isfinite(callback.history[0][1]["ncc_mismatch"])  # the tuple's logits gave predictions
    own = LPCCallback(schedule, loader=loader(), every_n_epochs=1,
                      latents=lambda module, x: module.head(module.body(x)).latent)
    fit(Tiny(), own)
    assert [e for e, _ in own.history] == [1, 2, 3]
    assert math.isnan(own.history[-1][1]["ncc_mismatch"])  # no logits from a latents function


def test_bad_arguments_are_usage_errors() -> None:
    with pytest.raises(UsageError, match="every_n_epochs"):
        LPCCallback(GammaSchedule(), every_n_epochs=0)
    with pytest.raises(UsageError, match="at\\(epoch\\)"):
        LPCCallback(object())
