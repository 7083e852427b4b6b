"""The component API: the README's own-loop example as written, and the pieces' contracts."""

from __future__ import annotations

import contextlib
import io
import re
from pathlib import Path

import pytest
import torch

import lpc_engine
from lpc_engine import GammaSchedule, LatentPenalty, LPCHead, latent_penalty
from lpc_engine.config import GammaConfig
from lpc_engine.errors import ConfigError, UsageError
from lpc_engine.training.schedules import gamma_at

README = Path(__file__).resolve().parents[2] / "README.md"
PENALTY_TERM = " + penalty(out.latent)"


def _readme_example() -> str:
    text = README.read_text(encoding="utf-8")
    section = text.split("## LPC in your own training loop", 1)[1]
    return re.search(r"```python\n(.*?)```", section, re.S).group(1)


def _separation_ratio(code: str) -> float:
    out = io.StringIO()
    with contextlib.redirect_stdout(out), torch.random.fork_rng(devices=[]):
        exec(compile(code, str(README), "exec"), {"__name__": "readme_example"})
    return float(re.search(r"R = ([0-9.]+)", out.getvalue()).group(1))


@pytest.mark.slow
def test_readme_loop_collapses_the_latents_and_the_same_loop_without_the_penalty_does_not():
    code = _readme_example()
    assert PENALTY_TERM in code
    with_penalty = _separation_ratio(code)
    without = _separation_ratio(code.replace(PENALTY_TERM, ""))
    assert with_penalty > 4 * without
    assert with_penalty > 15


def test_head_returns_logits_and_a_latent_of_width_d_with_the_papers_biases():
    head = LPCHead(32, num_classes=5, latent_dim=4)
    out = head(torch.randn(6, 32))
    assert out.logits.shape == (6, 5) and out.latent.shape == (6, 4)
    assert head.penultimate.bias is not None and head.classifier.bias is None
    torch.testing.assert_close(out.logits, out.latent @ head.classifier.weight.T)
    with pytest.raises(UsageError):
        LPCHead(32, num_classes=1, latent_dim=4)


def test_penalty_module_is_gamma_times_the_squared_norm_with_both_reductions():
    z = torch.tensor([[3.0, 4.0], [0.0, 2.0]])
    assert LatentPenalty(gamma=2.0)(z).item() == pytest.approx(2.0 * (25 + 4) / 2)
    assert LatentPenalty(gamma=2.0, reduction="mean")(z).item() == pytest.approx(2.0 * (25 + 4) / 4)
    p = LatentPenalty(reduction="mean")
    p.gamma = 0.5
    assert p(z).item() == latent_penalty(z, 0.5, "mean").item()
    with pytest.raises(ConfigError):
        LatentPenalty(reduction="max")


@pytest.mark.parametrize("fields", [
    {},
    {"gamma_schedule": "dual-exponential", "gamma_init": 1e-4, "gamma_factor": 2.0, "gamma_step_epochs": 5},
    {"gamma_schedule": "cosine", "gamma_ramp_epochs": 30, "gamma_max": 10.0},
])
def test_schedule_object_matches_the_trainers_schedule_of_the_same_fields(fields):
    s = GammaSchedule(epochs=100, **fields)
    g = GammaConfig(**fields)
    assert [s.at(e) for e in range(1, 101)] == [gamma_at(e, g, 100) for e in range(1, 101)]
    assert GammaSchedule.from_config(g, epochs=100).at(37) == s.at(37)


def test_schedule_refuses_what_a_config_file_would():
    with pytest.raises(ConfigError):
        GammaSchedule(gamma_factr=1.05)
    with pytest.raises(ConfigError):
        GammaSchedule(gamma_factor=0.5)
    with pytest.raises(ConfigError):
        GammaSchedule(gamma_schedule="linear").at(3)  # a ramp over half of an unknown length
    with pytest.raises(ConfigError):
        GammaSchedule().at(0)


def test_the_pieces_and_the_version_are_public():
    for name in ("LPCHead", "LatentPenalty", "GammaSchedule", "latent_metrics", "deepfool", "__version__"):
        assert name in lpc_engine.__all__ and hasattr(lpc_engine, name)
    assert re.match(r"\d+\.\d+", lpc_engine.__version__)
