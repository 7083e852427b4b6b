"""The gamma governor (training/governor.py) and the classifier's own
optimiser settings: the cap's formula for both reductions, the cap holding a
run's gamma below its schedule once the weights lag, and classifier_lr /
classifier_weight_decay reaching the classifier's parameter group."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import torch
from torch.optim.optimizer import register_optimizer_step_pre_hook

from lpc_engine import ConfigError, EpochEnd, build_config, train
from lpc_engine.config import GammaConfig
from lpc_engine.model.losses import latent_penalty
from lpc_engine.model.network import build_model
from lpc_engine.runs.checkpoint_files import load_checkpoint
from lpc_engine.runs.store import RunStore
from lpc_engine.training.governor import governed_gamma, weight_norm_cap

W = torch.tensor([[3.0, 4.0], [0.0, 1.0], [1.0, 1.0]])  # squared row norms 25, 1, 2: mean 28/3


def test_the_cap_is_the_factor_times_the_mean_squared_row_norm() -> None:
    assert weight_norm_cap(W, 0.1, "sum") == pytest.approx(0.1 * 28 / 3, rel=1e-12)
    # The mean reduction's penalty is gamma ||z||^2 / d: its gamma is d times larger.
    assert weight_norm_cap(W, 0.1, "mean") == pytest.approx(2 * 0.1 * 28 / 3, rel=1e-12)


def test_both_reductions_cap_the_same_penalty() -> None:
    z = torch.randn(32, 2, generator=torch.Generator().manual_seed(0))
    capped = {r: latent_penalty(z, weight_norm_cap(W, 0.25, r), r) for r in ("sum", "mean")}
    assert float(capped["sum"]) == pytest.approx(float(capped["mean"]), rel=1e-6)


def test_the_governor_takes_the_lower_of_schedule_and_cap() -> None:
    on = GammaConfig(gamma_cap="weight-norm", gamma_cap_factor=0.1, penalty_reduction="sum")
    cap = 0.1 * 28 / 3
    assert governed_gamma(100.0, W, on) == pytest.approx(cap)
    assert governed_gamma(0.5, W, on) == 0.5
    assert governed_gamma(100.0, W, dataclasses.replace(on, gamma_cap="none")) == 100.0


def test_a_capped_run_holds_gamma_below_its_schedule_and_reports_both(tmp_path: Path) -> None:
    """Gamma x4 an epoch outruns the classifier's rows within a few epochs:
    from then on the rows' gamma is the cap computed from the weights the
    epoch started with (the previous epoch's checkpoint), below the schedule."""
    cfg = build_config({"gamma": {"gamma_cap": "weight-norm", "gamma_cap_factor": 0.1}},
                       {"dataset": "synthetic", "device": "cpu", "epochs": 6, "gamma_init": 0.1,
                        "gamma_factor": 4.0, "gamma_max": 1e6, "checkpoint_every": 1,
                        "robustness_samples": 0, "latent_sample_size": 0})
    rows = [e for e in train(cfg, run_dir=tmp_path / "r") if isinstance(e, EpochEnd)]
    assert [r.gamma_scheduled for r in rows] == [0.1 * 4.0 ** k for k in range(6)]
    assert all(r.gamma <= r.gamma_scheduled for r in rows)
    assert rows[-1].gamma < rows[-1].gamma_scheduled  # capped by the end
    before_last = load_checkpoint(RunStore(tmp_path / "r").checkpoints()[0])  # after epoch 5
    assert before_last["epoch"] == 5
    cap = weight_norm_cap(before_last["model"]["classifier.weight"], 0.1, cfg.gamma.penalty_reduction)
    assert rows[-1].gamma == pytest.approx(cap, rel=1e-9)
    on_disk = [r for r in RunStore(tmp_path / "r").read_events() if r.get("epoch") == 6 and "gamma" in r]
    assert on_disk[0]["gamma"] == rows[-1].gamma and on_disk[0]["gamma_scheduled"] == rows[-1].gamma_scheduled


def test_without_the_governor_gamma_is_the_schedule(tmp_path: Path) -> None:
    cfg = build_config(None, {"dataset": "synthetic", "device": "cpu", "epochs": 3, "gamma_init": 0.1,
                              "gamma_factor": 4.0, "robustness_samples": 0, "latent_sample_size": 0})
    rows = [e for e in train(cfg) if isinstance(e, EpochEnd)]
    assert [r.gamma for r in rows] == [r.gamma_scheduled for r in rows] == [0.1, 0.4, 1.6]


def _groups_during_training(cfg) -> list[list[tuple[float, float]]]:
    seen: list[list[tuple[float, float]]] = []
    handle = register_optimizer_step_pre_hook(
        lambda opt, args, kwargs: seen.append([(g["lr"], g["weight_decay"]) for g in opt.param_groups]))
    try:
        list(train(cfg))
    finally:
        handle.remove()
    return seen


def test_the_classifier_gets_its_own_lr_and_weight_decay() -> None:
    base = {"dataset": "synthetic", "device": "cpu", "epochs": 3, "lr": 1e-3, "batch_size": 128,
            "robustness_samples": 0, "latent_sample_size": 0}
    own = build_config({"optim": {"classifier_lr": 0.02, "classifier_weight_decay": 0.0,
                                  "weight_decay": 1e-3, "lr_schedule": "halving", "lr_decay_start": 1,
                                  "lr_halving_every": 1}}, base)
    seen = _groups_during_training(own)
    assert seen and all(groups[1] == (0.02, 0.0) for groups in seen)
    # 2 steps an epoch; the body halves in epoch 3 (schedules.lr_at), the classifier does not.
    assert [groups[0] for groups in seen] == [(1e-3, 1e-3)] * 4 + [(5e-4, 1e-3)] * 2
    default = _groups_during_training(build_config({"optim": {"weight_decay": 1e-3}}, base))
    assert all(groups[1] == groups[0] == (1e-3, 1e-3) for groups in default)


def test_the_classifier_group_holds_the_classifier_alone() -> None:
    cfg = build_config({"optim": {"classifier_lr": 0.02}}, {"dataset": "synthetic", "device": "cpu"})
    from lpc_engine.training.session import _optimizer
    model = build_model("mlp", "linear", (3, 8, 8), 4, 8, False)
    groups = _optimizer(model, cfg).param_groups
    assert [id(p) for p in groups[1]["params"]] == [id(model.classifier.weight)]
    assert groups[1]["lr"] == 0.02 and groups[0]["lr"] == cfg.optim.lr


def test_a_negative_classifier_weight_decay_is_the_bodys() -> None:
    from lpc_engine.training.session import _optimizer
    model = build_model("mlp", "linear", (3, 8, 8), 4, 8, False)
    for value, expected in ((-1.0, 1e-3), (-0.5, 1e-3), (0.0, 0.0), (0.2, 0.2)):
        cfg = build_config({"optim": {"classifier_weight_decay": value, "weight_decay": 1e-3}},
                           {"dataset": "synthetic", "device": "cpu"})
        assert _optimizer(model, cfg).param_groups[1]["weight_decay"] == expected, value
    with pytest.raises(ConfigError, match="classifier_weight_decay"):
        build_config({"optim": {"classifier_weight_decay": -2.0}}, {"dataset": "synthetic"})
