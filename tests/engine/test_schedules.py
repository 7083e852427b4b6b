"""Gamma and LR schedules against the paper's numbers (appendix C) and the
authors' code; pure functions, no training."""

from __future__ import annotations

import math

import pytest

from lpc_engine.config import GammaConfig, OptimConfig
from lpc_engine.training.schedules import epoch_reaching_max, gamma_at, lr_at, ramp_progress

PAPER_EPOCHS = 800


def paper_gamma(**kw: object) -> GammaConfig:
    """The paper's exponential schedule: 1e-2, x1.05 each epoch, to 1e6."""
    base = dict(gamma_schedule="exponential", gamma_init=1e-2, gamma_factor=1.05,
                gamma_step_epochs=1, gamma_max=1e6)
    base.update(kw)
    return GammaConfig(**base)  # type: ignore[arg-type]


def authors_dual() -> GammaConfig:
    """The authors' CIFAR-10 dual-regime values: 1e-4 x2 every 5 epochs to 1e3,
    then x1.25 every 5 epochs to 1e6."""
    return GammaConfig(gamma_schedule="dual-exponential", gamma_init=1e-4, gamma_factor=2.0,
                       gamma_step_epochs=5, gamma_switch=1e3, gamma_factor_late=1.25,
                       gamma_step_epochs_late=5, gamma_max=1e6)


# ---- exponential (the paper) ----


def test_paper_schedule_arithmetic_behind_epoch_379() -> None:
    # 378 multiplications by 1.05 are the first to reach 1e6 from 1e-2.
    assert 1e-2 * 1.05**378 >= 1e6 > 1e-2 * 1.05**377


def test_paper_schedule_reaches_max_at_epoch_379() -> None:
    g = paper_gamma()
    assert gamma_at(378, g, PAPER_EPOCHS) < 1e6
    assert gamma_at(378, g, PAPER_EPOCHS) == pytest.approx(1e-2 * 1.05**377, rel=1e-9)
    assert gamma_at(379, g, PAPER_EPOCHS) == 1e6
    assert epoch_reaching_max(g, PAPER_EPOCHS) == 379


def test_paper_schedule_stays_at_max() -> None:
    g = paper_gamma()
    assert all(gamma_at(e, g, PAPER_EPOCHS) == 1e6 for e in range(379, PAPER_EPOCHS + 1))


def test_epoch_reaching_max_none_when_run_too_short() -> None:
    assert epoch_reaching_max(paper_gamma(), 378) is None
    assert epoch_reaching_max(paper_gamma(), 379) == 379


@pytest.mark.parametrize("epoch", [1, 2, 11, 101, 201, 301, 378])
def test_paper_schedule_closed_form(epoch: int) -> None:
    g = paper_gamma()
    assert gamma_at(epoch, g, PAPER_EPOCHS) == pytest.approx(1e-2 * 1.05 ** (epoch - 1), rel=1e-9)


def test_gamma_at_epoch_one_is_exactly_gamma_init() -> None:
    assert gamma_at(1, paper_gamma(), PAPER_EPOCHS) == 1e-2


def test_paper_schedule_is_monotone() -> None:
    g = paper_gamma()
    values = [gamma_at(e, g, PAPER_EPOCHS) for e in range(1, PAPER_EPOCHS + 1)]
    assert all(b >= a for a, b in zip(values, values[1:]))
    assert all(b > a for a, b in zip(values[:378], values[1:378]))  # strictly, before the cap


def test_no_overflow_for_very_long_runs() -> None:
    g = paper_gamma()
    assert gamma_at(10**6, g, 10**6) == 1e6
    steep = paper_gamma(gamma_factor=100.0, gamma_max=1e12)
    assert gamma_at(10**6, steep, 10**6) == 1e12


def test_step_epochs_multiplies_every_fifth_epoch_only() -> None:
    g = paper_gamma(gamma_factor=2.0, gamma_step_epochs=5, gamma_init=1.0, gamma_max=1e6)
    got = [gamma_at(e, g, 100) for e in range(1, 16)]
    want = [1.0] * 5 + [2.0] * 5 + [4.0] * 5
    assert got == pytest.approx(want, rel=1e-12)


def test_gamma_init_above_max_is_capped() -> None:
    # validate() forbids it; the pure function still never exceeds the cap.
    g = GammaConfig(gamma_init=10.0, gamma_max=1.0)
    assert gamma_at(1, g, 10) == 1.0


def test_gamma_init_zero_stays_zero() -> None:
    g = paper_gamma(gamma_init=0.0)
    assert gamma_at(1, g, 10) == 0.0
    assert gamma_at(10, g, 10) == 0.0


# ---- dual-exponential (the authors' code) ----

# ceil(log2(1e3 / 1e-4)) = ceil(log2(1e7)) = 24 doublings, one every 5 epochs,
# so the late regime starts at epoch 24 * 5 + 1 = 121.
DOUBLINGS = math.ceil(math.log2(1e7))
FIRST_LATE_EPOCH = DOUBLINGS * 5 + 1
# then ceil(log_1.25(1e6 / 1e3)) = 31 late steps of 5 epochs each.
LATE_STEPS = math.ceil(math.log(1e3) / math.log(1.25))
FIRST_MAX_EPOCH = FIRST_LATE_EPOCH + LATE_STEPS * 5


def test_dual_hand_computed_epochs() -> None:
    assert DOUBLINGS == 24 and FIRST_LATE_EPOCH == 121
    assert 1e-4 * 2**23 < 1e3 <= 1e-4 * 2**24
    assert LATE_STEPS == 31 and FIRST_MAX_EPOCH == 276
    assert 1e3 * 1.25**30 < 1e6 <= 1e3 * 1.25**31


def test_dual_early_regime_doubles_every_five_epochs() -> None:
    g = authors_dual()
    for epoch in (1, 5, 6, 11, 116, 120):
        want = 1e-4 * 2 ** ((epoch - 1) // 5)
        assert gamma_at(epoch, g, PAPER_EPOCHS) == pytest.approx(want, rel=1e-9)
    assert gamma_at(FIRST_LATE_EPOCH - 1, g, PAPER_EPOCHS) < 1e3


def test_dual_switches_to_late_regime() -> None:
    g = authors_dual()
    assert gamma_at(FIRST_LATE_EPOCH, g, PAPER_EPOCHS) == pytest.approx(1e3, rel=1e-12)
    for k in (1, 2, 10):
        epoch = FIRST_LATE_EPOCH + 5 * k
        assert gamma_at(epoch, g, PAPER_EPOCHS) == pytest.approx(1e3 * 1.25**k, rel=1e-9)
        assert gamma_at(epoch - 1, g, PAPER_EPOCHS) == pytest.approx(1e3 * 1.25 ** (k - 1), rel=1e-9)


def test_dual_equals_switch_exactly_at_first_late_epoch() -> None:
    assert gamma_at(FIRST_LATE_EPOCH, authors_dual(), PAPER_EPOCHS) == 1e3


def test_dual_reaches_max_and_stays() -> None:
    g = authors_dual()
    assert epoch_reaching_max(g, PAPER_EPOCHS) == FIRST_MAX_EPOCH
    assert gamma_at(FIRST_MAX_EPOCH - 1, g, PAPER_EPOCHS) < 1e6
    assert all(gamma_at(e, g, PAPER_EPOCHS) == 1e6 for e in range(FIRST_MAX_EPOCH, PAPER_EPOCHS + 1))


def test_dual_is_monotone_non_decreasing_and_bounded() -> None:
    g = authors_dual()
    values = [gamma_at(e, g, PAPER_EPOCHS) for e in range(1, PAPER_EPOCHS + 1)]
    assert all(b >= a for a, b in zip(values, values[1:]))
    assert values[0] == pytest.approx(1e-4, rel=1e-12)
    assert max(values) == 1e6


def test_dual_switch_above_max_caps_at_max() -> None:
    g = GammaConfig(gamma_schedule="dual-exponential", gamma_init=1.0, gamma_factor=2.0,
                    gamma_step_epochs=1, gamma_switch=1e3, gamma_max=10.0)
    values = [gamma_at(e, g, 100) for e in range(1, 101)]
    assert max(values) == 10.0
    assert all(b >= a for a, b in zip(values, values[1:]))


# ---- linear, cosine, constant ----


@pytest.mark.parametrize("schedule", ["linear", "cosine"])
def test_ramp_starts_at_init_and_reaches_max(schedule: str) -> None:
    g = GammaConfig(gamma_schedule=schedule, gamma_init=1e-2, gamma_max=1e6, gamma_ramp_epochs=100)
    assert gamma_at(1, g, PAPER_EPOCHS) == 1e-2
    assert gamma_at(100, g, PAPER_EPOCHS) < 1e6
    assert gamma_at(101, g, PAPER_EPOCHS) == 1e6
    assert gamma_at(PAPER_EPOCHS, g, PAPER_EPOCHS) == 1e6
    assert epoch_reaching_max(g, PAPER_EPOCHS) == 101
    values = [gamma_at(e, g, PAPER_EPOCHS) for e in range(1, 200)]
    assert all(b >= a for a, b in zip(values, values[1:]))


def test_linear_is_linear() -> None:
    g = GammaConfig(gamma_schedule="linear", gamma_init=1.0, gamma_max=11.0, gamma_ramp_epochs=10)
    assert [gamma_at(e, g, 50) for e in range(1, 13)] == pytest.approx(
        [1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0, 9.0, 10.0, 11.0, 11.0])


def test_cosine_midpoint_equals_linear_midpoint() -> None:
    lin = GammaConfig(gamma_schedule="linear", gamma_init=1e-2, gamma_max=1e6, gamma_ramp_epochs=100)
    cos = GammaConfig(gamma_schedule="cosine", gamma_init=1e-2, gamma_max=1e6, gamma_ramp_epochs=100)
    mid = 51  # 50 of 100 ramp epochs done
    assert gamma_at(mid, lin, 800) == pytest.approx((1e-2 + 1e6) / 2, rel=1e-12)
    assert gamma_at(mid, cos, 800) == pytest.approx(gamma_at(mid, lin, 800), rel=1e-12)
    # cosine eases in: below the line early, above it late
    assert gamma_at(11, cos, 800) < gamma_at(11, lin, 800)
    assert gamma_at(91, cos, 800) > gamma_at(91, lin, 800)


@pytest.mark.parametrize("schedule", ["linear", "cosine"])
def test_ramp_epochs_zero_means_half_the_run(schedule: str) -> None:
    g = GammaConfig(gamma_schedule=schedule, gamma_init=0.0, gamma_max=100.0, gamma_ramp_epochs=0)
    assert gamma_at(400, g, 800) < 100.0
    assert gamma_at(401, g, 800) == 100.0
    assert epoch_reaching_max(g, 800) == 401
    assert epoch_reaching_max(g, 100) == 51
    # a one-epoch run does not divide by zero
    assert gamma_at(1, g, 1) == 0.0


def test_constant_is_gamma_max_throughout() -> None:
    g = GammaConfig(gamma_schedule="constant", gamma_init=1e-2, gamma_max=123.0)
    assert {gamma_at(e, g, 800) for e in (1, 2, 379, 800)} == {123.0}
    assert epoch_reaching_max(g, 800) == 1


# ---- learning rate ----


def paper_lr(**kw: object) -> OptimConfig:
    base = dict(lr=1e-4, lr_schedule="halving", lr_decay_start=250, lr_halving_every=50)
    base.update(kw)
    return OptimConfig(**base)  # type: ignore[arg-type]


def test_constant_lr() -> None:
    o = paper_lr(lr_schedule="constant")
    assert {lr_at(e, o, 800) for e in (1, 250, 251, 500, 800)} == {1e-4}


@pytest.mark.parametrize(("epoch", "halvings"), [
    (1, 0), (250, 0), (251, 0), (300, 0), (301, 1), (350, 1), (351, 2), (751, 10), (800, 10)])
def test_halving_as_authors_code(epoch: int, halvings: int) -> None:
    assert lr_at(epoch, paper_lr(), 800) == 1e-4 / 2**halvings


def test_halving_is_monotone_and_never_zero() -> None:
    o = paper_lr()
    values = [lr_at(e, o, 800) for e in range(1, 801)]
    assert all(b <= a for a, b in zip(values, values[1:]))
    assert min(values) > 0
    assert len(set(values)) == 11  # lr, lr/2, ..., lr/2**10


def test_cosine_lr() -> None:
    o = paper_lr(lr_schedule="cosine")
    assert {lr_at(e, o, 800) for e in (1, 100, 250, 251)} == {1e-4}
    values = [lr_at(e, o, 800) for e in range(251, 801)]
    assert all(b < a for a, b in zip(values, values[1:]))  # strictly decreasing after the start
    assert 0 < lr_at(800, o, 800) < 1e-4 * 1e-4
    # midpoint of the 550 epochs after lr_decay_start: 275 steps done at epoch 526
    assert lr_at(526, o, 800) == pytest.approx(1e-4 / 2, rel=1e-12)


def test_cosine_lr_decay_start_after_run_is_constant() -> None:
    o = paper_lr(lr_schedule="cosine", lr_decay_start=1000)
    assert lr_at(800, o, 800) == 1e-4


# ---- margin ramps ----


def test_ramp_progress() -> None:
    assert ramp_progress(1, 48) == 0.0
    assert ramp_progress(25, 48) == 0.5
    assert ramp_progress(49, 48) == 1.0
    assert ramp_progress(800, 48) == 1.0
    assert ramp_progress(0, 48) == 0.0  # clamped
    values = [ramp_progress(e, 48) for e in range(1, 60)]
    assert all(b >= a for a, b in zip(values, values[1:]))


def test_ramp_progress_scale_plus_one_an_epoch() -> None:
    # authors' code: scale 16 -> 64, +1 an epoch, over 48 epochs
    for epoch in (1, 2, 10, 49):
        assert 16 + 48 * ramp_progress(epoch, 48) == pytest.approx(16 + (epoch - 1))
