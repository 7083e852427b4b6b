"""Backbones and heads: shapes, the zero classifier bias, cosine logits, errors."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from lpc_engine.model.backbones import BACKBONES, build_backbone
from lpc_engine.errors import ConfigError
from lpc_engine.model.network import HEADS, CosineClassifier, LpcModel, ModelOutput, build_model

NUM_CLASSES = 10
LATENT_DIM = 16
FEATURES = {"mlp": 128, "cnn": 128, "resnet18": 512, "resnet34": 512, "resnet50": 2048}
# The deep ResNets cost ~0.2 s per build + step on a CPU, and heads do not
# depend on the backbone beyond out_features: cover every head on the cheap
# backbones and the LPC head on the expensive ones.
CHEAP = ("mlp", "cnn", "resnet18")
COMBOS = [(b, h) for b in CHEAP for h in HEADS] + [("resnet34", "linear"), ("resnet50", "linear")]


def _expected_latent_dim(backbone: str, head: str) -> int:
    return LATENT_DIM if head in ("linear", "nonlinear") else FEATURES[backbone]


def _check_forward_backward(model: LpcModel, x: torch.Tensor, backbone: str, head: str) -> None:
    out = model(x)
    assert isinstance(out, ModelOutput)
    batch = x.shape[0]
    assert out.logits.shape == (batch, NUM_CLASSES)
    assert out.latent.shape == (batch, _expected_latent_dim(backbone, head))
    assert out.features.shape == (batch, FEATURES[backbone])
    (out.logits.sum() + out.latent.pow(2).sum()).backward()
    assert model.classifier.weight.grad is not None
    assert all(p.grad is not None for p in model.backbone.parameters())


@pytest.mark.parametrize(("backbone", "head"), COMBOS)
def test_forward_backward_on_digits_sized_input(backbone: str, head: str) -> None:
    torch.manual_seed(0)
    model = build_model(backbone, head, (1, 8, 8), NUM_CLASSES, LATENT_DIM)
    _check_forward_backward(model, torch.randn(4, 1, 8, 8), backbone, head)


@pytest.mark.parametrize(
    ("backbone", "head"), [(b, h) for b in ("mlp", "cnn") for h in HEADS] + [("resnet18", "linear")]
)
def test_forward_backward_on_cifar_sized_input(backbone: str, head: str) -> None:
    torch.manual_seed(0)
    model = build_model(backbone, head, (3, 32, 32), NUM_CLASSES, LATENT_DIM)
    _check_forward_backward(model, torch.randn(2, 3, 32, 32), backbone, head)


def test_cnn_on_mnist_sized_input() -> None:
    torch.manual_seed(0)
    h = build_backbone("cnn", (1, 28, 28))
    assert h(torch.randn(2, 1, 28, 28)).shape == (2, 128)


@pytest.mark.parametrize(
    ("name", "params"),
    # The parameter counts of the standard CIFAR ResNets (3x3 stem, no
    # max-pool) without their final fc layer: SiLU adds no parameters.
    [("resnet18", 11_168_832), ("resnet34", 21_276_992), ("resnet50", 23_500_352)],
)
def test_resnet_parameter_counts_match_cifar_resnets(name: str, params: int) -> None:
    h = build_backbone(name, (3, 32, 32))
    assert h.out_features == FEATURES[name]
    assert sum(p.numel() for p in h.parameters()) == params


def test_backbones_use_silu_not_relu() -> None:
    # Appendix C: Swish in all non-linear layers.
    for name in ("mlp", "cnn", "resnet18"):
        modules = list(build_backbone(name, (1, 8, 8)).modules())
        assert any(isinstance(m, nn.SiLU) for m in modules)
        assert not any(isinstance(m, nn.ReLU) for m in modules)


def test_mlp_layers() -> None:
    h = build_backbone("mlp", (64,))
    linears = [m for m in h.modules() if isinstance(m, nn.Linear)]
    assert [(m.in_features, m.out_features) for m in linears] == [(64, 256), (256, 256), (256, 128)]
    assert sum(isinstance(m, nn.BatchNorm1d) for m in h.modules()) == 3


def test_classifier_has_no_bias_by_default() -> None:
    for head in ("linear", "nonlinear", "none"):
        model = build_model("mlp", head, (64,), NUM_CLASSES, LATENT_DIM)
        assert isinstance(model.classifier, nn.Linear)
        assert model.classifier.bias is None
    model = build_model("mlp", "linear", (64,), NUM_CLASSES, LATENT_DIM, classifier_bias=True)
    assert model.classifier.bias is not None


def test_linear_head_is_affine_with_bias() -> None:
    # Section II: z = W_L2 h + b_L2.
    model = build_model("mlp", "linear", (64,), NUM_CLASSES, LATENT_DIM)
    assert isinstance(model.penultimate, nn.Linear)
    assert model.penultimate.bias is not None
    assert model.classifier.weight.shape == (NUM_CLASSES, LATENT_DIM)


def test_heads_without_penultimate_pass_features_through() -> None:
    torch.manual_seed(0)
    for head in ("none", "cosine"):
        model = build_model("mlp", head, (64,), NUM_CLASSES, latent_dim=None).eval()
        assert isinstance(model.penultimate, nn.Identity)
        out = model(torch.randn(3, 64))
        assert torch.equal(out.latent, out.features)


def test_nonlinear_head_output_is_silu() -> None:
    torch.manual_seed(0)
    model = build_model("mlp", "nonlinear", (64,), NUM_CLASSES, LATENT_DIM)
    z = model(torch.randn(8, 64)).latent
    # SiLU is bounded below by its minimum, about -0.2785.
    assert z.min().item() >= -0.2785


def test_cosine_logits_are_cosines() -> None:
    torch.manual_seed(0)
    model = build_model("mlp", "cosine", (64,), NUM_CLASSES, None)
    assert isinstance(model.classifier, CosineClassifier)
    assert model.classifier.weight.shape == (NUM_CLASSES, 128)
    out = model(torch.randn(6, 64))
    assert out.logits.abs().max().item() <= 1.0 + 1e-6
    # A sample equal to (a multiple of) a class weight has cosine 1 with it.
    cls = model.classifier
    logits = cls(3.0 * cls.weight.detach()[[2, 5]])
    assert torch.allclose(logits[:, [2, 5]].diagonal(), torch.ones(2), atol=1e-6)


def test_flat_input_works_with_mlp_only() -> None:
    torch.manual_seed(0)
    model = build_model("mlp", "linear", (64,), NUM_CLASSES, LATENT_DIM)
    assert model(torch.randn(4, 64)).logits.shape == (4, NUM_CLASSES)
    for name in BACKBONES[1:]:
        with pytest.raises(ConfigError, match=name):
            build_backbone(name, (64,))


def test_unknown_names_raise_config_error() -> None:
    with pytest.raises(ConfigError, match="resnet18"):
        build_backbone("vgg", (3, 32, 32))
    with pytest.raises(ConfigError, match="nonlinear"):
        build_model("mlp", "mlp", (64,), NUM_CLASSES, LATENT_DIM)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"head": "linear", "latent_dim": None},
        {"head": "nonlinear", "latent_dim": 0},
        {"head": "linear", "latent_dim": 2.5},
        {"head": "linear", "num_classes": 1},
        {"head": "cosine", "classifier_bias": True},
    ],
)
def test_invalid_model_settings_raise_config_error(kwargs: dict) -> None:
    args = {"backbone": "mlp", "input_shape": (64,), "num_classes": NUM_CLASSES, "latent_dim": 8}
    with pytest.raises(ConfigError):
        build_model(**(args | kwargs))
