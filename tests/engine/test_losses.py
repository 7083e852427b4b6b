"""Loss terms against values worked out by hand."""

from __future__ import annotations

import math

import pytest
import torch

from lpc_engine.config import LossConfig
from lpc_engine.errors import ConfigError
from lpc_engine.model.losses import (
    SUPCON_TEMPERATURE,
    latent_penalty,
    margin_logits,
    ramp,
    supcon_loss,
)

# ---- latent penalty (eq. 1) ----


def test_penalty_single_sample() -> None:
    z = torch.tensor([[3.0, 4.0]])  # ||z||^2 = 25
    assert latent_penalty(z, gamma=2.0).item() == pytest.approx(50.0)
    assert latent_penalty(z, gamma=2.0, reduction="sum").item() == pytest.approx(50.0)
    assert latent_penalty(z, gamma=2.0, reduction="mean").item() == pytest.approx(25.0)


def test_penalty_averages_over_batch() -> None:
    z = torch.tensor([[3.0, 4.0], [0.0, 0.0], [1.0, 0.0]])  # ||z||^2 = 25, 0, 1
    assert latent_penalty(z, gamma=1.0).item() == pytest.approx(26.0 / 3)
    assert latent_penalty(z, gamma=1.0, reduction="mean").item() == pytest.approx(13.0 / 3)


def test_penalty_gradient_is_two_gamma_z_over_batch() -> None:
    z = torch.tensor([[1.0, -2.0], [0.5, 0.0]], requires_grad=True)
    latent_penalty(z, gamma=3.0).backward()
    assert torch.allclose(z.grad, 2 * 3.0 * z.detach() / 2)


def test_penalty_rejects_unknown_reduction() -> None:
    with pytest.raises(ConfigError, match="sum"):
        latent_penalty(torch.ones(2, 2), gamma=1.0, reduction="none")


# ---- SupCon (appendix C) ----


def test_supcon_four_points_on_axes() -> None:
    # a=(1,0), b=(0,1) class 0; c=(-1,0), d=(0,-1) class 1; tau = 1.
    # Anchor a: s_ab = 0 (its positive), s_ac = -1, s_ad = 0, so
    # log p = 0 - log(e^0 + e^-1 + e^0); every anchor is the same by symmetry.
    features = torch.tensor([[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0], [0.0, -1.0]])
    labels = torch.tensor([0, 0, 1, 1])
    expected = math.log(2 + math.exp(-1))
    assert supcon_loss(features, labels, temperature=1.0).item() == pytest.approx(expected, rel=1e-6)
    # Features are normalised first, so their length does not matter.
    assert supcon_loss(5 * features, labels, 1.0).item() == pytest.approx(expected, rel=1e-6)


def test_supcon_excludes_anchors_without_positives() -> None:
    # a=b=(1,0) class 0, c=(0,1) alone in class 1 (no term); tau = 0.5.
    # Anchor a: log p_ab = 1/0.5 - log(e^(1/0.5) + e^0), same for b.
    features = torch.tensor([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0]])
    labels = torch.tensor([0, 0, 1])
    expected = -(2.0 - math.log(math.exp(2.0) + 1.0))  # = log(1 + e^-2)
    assert supcon_loss(features, labels, temperature=0.5).item() == pytest.approx(expected, rel=1e-6)


def test_supcon_averages_over_several_positives() -> None:
    # a=(1,0), b=(0,1), c=(-1,0) all class 0; tau = 1.
    # a: positives b (s=0), c (s=-1); denominator e^0 + e^-1 = D.
    #    terms -log D and -1 - log D, mean -(0.5 + log D); c is a's mirror.
    # b: positives a, c both s=0; denominator 2, mean term -log 2.
    features = torch.tensor([[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0]])
    labels = torch.tensor([7, 7, 7])
    log_d = math.log(1 + math.exp(-1))
    expected = (2 * (0.5 + log_d) + math.log(2)) / 3
    assert supcon_loss(features, labels, temperature=1.0).item() == pytest.approx(expected, rel=1e-6)


def test_supcon_lower_when_classes_coincide() -> None:
    labels = torch.tensor([0, 0, 1, 1])
    collapsed = torch.tensor([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0], [0.0, 1.0]])
    orthogonal = torch.tensor([[1.0, 0.0], [0.0, 1.0], [-1.0, 0.0], [0.0, -1.0]])
    assert supcon_loss(collapsed, labels) < supcon_loss(orthogonal, labels)


def test_supcon_without_positives_is_zero_with_grad() -> None:
    features = torch.tensor([[1.0, 0.0], [0.0, 1.0]], requires_grad=True)
    loss = supcon_loss(features, torch.tensor([0, 1]))
    assert loss.item() == 0.0
    assert loss.grad_fn is not None
    loss.backward()
    assert torch.equal(features.grad, torch.zeros(2, 2))


def test_supcon_is_stable_at_tiny_temperature() -> None:
    # exp(1 / 0.005) = exp(200) overflows float32; logsumexp must not.
    torch.manual_seed(0)
    features = torch.randn(16, 8, requires_grad=True)
    labels = torch.arange(16) % 3
    loss = supcon_loss(features, labels, temperature=0.005)
    loss.backward()
    assert torch.isfinite(loss)
    assert torch.isfinite(features.grad).all()


def test_supcon_rejects_nonpositive_temperature() -> None:
    with pytest.raises(ConfigError):
        supcon_loss(torch.ones(2, 2), torch.tensor([0, 0]), temperature=0.0)


# ---- ArcFace / CosFace margins (appendix C) ----


def test_arcface_adds_angle_on_target() -> None:
    cosine = torch.tensor([[0.0, 0.3, -0.2]])
    logits = margin_logits(cosine, torch.tensor([0]), "arcface", margin=0.5, scale=10.0)
    assert logits[0, 0].item() == pytest.approx(10.0 * math.cos(math.pi / 2 + 0.5), abs=1e-5)
    assert torch.allclose(logits[0, 1:], 10.0 * cosine[0, 1:])


def test_cosface_subtracts_scaled_margin_on_target_only() -> None:
    cosine = torch.tensor([[0.5, 0.1], [0.2, -0.4]])
    labels = torch.tensor([0, 1])
    logits = margin_logits(cosine, labels, "cosface", margin=0.25, scale=4.0)
    expected = torch.tensor([[4.0 * 0.5 - 1.0, 0.4], [0.8, 4.0 * -0.4 - 1.0]])
    assert torch.allclose(logits, expected)


def test_arcface_gradient_is_finite_at_cosine_one() -> None:
    cosine = torch.tensor([[1.0, -1.0]], requires_grad=True)
    logits = margin_logits(cosine, torch.tensor([0]), "arcface", margin=0.5, scale=64.0)
    logits.sum().backward()
    assert torch.isfinite(cosine.grad).all()
    # float32 rounds the clamp 1 - 1e-7 to 1 - 1.2e-7, i.e. theta >= 4.9e-4 rad,
    # which moves a scale-64 logit by about 0.015.
    assert logits[0, 0].item() == pytest.approx(64.0 * math.cos(0.5), abs=0.02)


def test_margin_rejects_unknown_kind() -> None:
    with pytest.raises(ConfigError, match="arcface"):
        margin_logits(torch.zeros(1, 2), torch.tensor([0]), "sphereface", 0.1, 1.0)


# ---- ramp ----


def test_ramp_endpoints_midpoint_and_clamping() -> None:
    assert ramp(0.0, 16.0, 64.0) == 16.0
    assert ramp(1.0, 16.0, 64.0) == 64.0
    assert ramp(0.5, 16.0, 64.0) == 40.0
    assert ramp(-0.3, 16.0, 64.0) == 16.0
    assert ramp(2.0, 16.0, 64.0) == 64.0
    assert ramp(0.25, 0.5, 0.1) == pytest.approx(0.4)


def test_paper_constants() -> None:
    losses = LossConfig()  # appendix C, ramped start -> end
    assert losses.arcface_margin == (0.1, 0.5)
    assert losses.cosface_margin == (0.05, 0.25)
    assert losses.margin_scale == (16.0, 64.0)
    assert SUPCON_TEMPERATURE == losses.supcon_temperature == 0.05
