"""DeepFool, the Table II robustness row and the Lipschitz estimate.

Linear classifiers give DeepFool's answer in closed form (Moosavi-Dezfooli et
al. 2016, eq. 3 and 6): one step to the nearest hyperplane. The authors add
1e-4 to each step's *distance*, r_i = (|f_k| / ||w_k|| + 1e-4) * w_k / ||w_k||,
and scale the total by 1 + overshoot, so for a linear binary classifier
||r|| = 1.02 * (|w.x + b| / ||w|| + 1e-4) exactly.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from lpc_engine.data.datasets import load_data
from lpc_engine.errors import UsageError
from lpc_engine.model.network import ModelOutput, build_model
from lpc_engine.robustness import (DeepFoolResult, deepfool, deepfool_single, lipschitz_estimate,
                                   robustness_table)

TABLE_KEYS = {"robustness_mean", "robustness_median", "robustness_correct_mean",
              "deepfool_converged", "test_acc", "samples"}


class LinearNet(nn.Module):
    """logits = W x + b on the flattened input, as a ModelOutput."""

    def __init__(self, weight: torch.Tensor, bias: torch.Tensor) -> None:
        super().__init__()
        self.weight = nn.Parameter(weight.clone())
        self.bias = nn.Parameter(bias.clone())

    def forward(self, x: torch.Tensor) -> ModelOutput:
        flat = x.flatten(1)
        return ModelOutput(flat @ self.weight.T + self.bias, flat, flat)


def one_at_a_time(model: nn.Module, x: torch.Tensor, **kwargs) -> DeepFoolResult:
    parts = [deepfool_single(model, xi, **kwargs) for xi in x]
    return DeepFoolResult(*(torch.cat(field) for field in zip(*parts)))


@pytest.fixture(scope="module")
def digits():
    return load_data("digits")


@pytest.fixture(scope="module")
def mlp(digits):
    """The digits MLP after 150 AdamW steps (test accuracy ~0.95)."""
    torch.manual_seed(0)
    model = build_model("mlp", "linear", (1, 8, 8), 10, 16)
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    g = torch.Generator().manual_seed(0)
    for _ in range(150):
        idx = torch.randint(0, digits.x_train.shape[0], (128,), generator=g)
        loss = F.cross_entropy(model(digits.x_train[idx]).logits, digits.y_train[idx])
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    opt.zero_grad(set_to_none=True)
    return model.eval()


def test_binary_linear_steps_once_to_the_hyperplane():
    g = torch.Generator().manual_seed(1)
    weight = torch.randn(2, 6, generator=g, dtype=torch.float64)
    bias = torch.randn(2, generator=g, dtype=torch.float64)
    x = torch.randn(7, 2, 3, generator=g, dtype=torch.float64)
    model = LinearNet(weight, bias)
    logits = x.flatten(1) @ weight.T + bias
    label = logits.argmax(1)
    w = weight[1 - label] - weight[label]  # (7, 6): gradient of f_other - f_label
    f = logits.gather(1, (1 - label)[:, None]).squeeze(1) - logits.gather(1, label[:, None]).squeeze(1)
    dist = f.abs() / w.norm(dim=1)
    expected = (1.02 * (dist + 1e-4))[:, None] * w / w.norm(dim=1, keepdim=True)
    for res in (deepfool(model, x), one_at_a_time(model, x)):
        torch.testing.assert_close(res.perturbation.flatten(1), expected, rtol=1e-12, atol=0)
        torch.testing.assert_close(res.ratio, 1.02 * (dist + 1e-4) / x.flatten(1).norm(dim=1),
                                   rtol=1e-12, atol=0)
        assert res.iterations.tolist() == [1] * 7
        assert res.converged.all()
        assert torch.equal(res.label, label) and torch.equal(res.adv_label, 1 - label)


def test_multiclass_linear_goes_to_the_nearest_candidate_boundary():
    # f = (x0, x1, 10 x2, x3) at x = (3, 2.5, 0.2, 0): logits (3, 2.5, 2, 0), label 0.
    # Distances: class 1 at 0.5/sqrt(2) = 0.354, class 2 at 1/sqrt(101) = 0.0995.
    model = LinearNet(torch.diag(torch.tensor([1.0, 1, 10, 1], dtype=torch.float64)),
                      torch.zeros(4, dtype=torch.float64))
    x = torch.tensor([[[3.0, 2.5], [0.2, 0.0]]], dtype=torch.float64)
    res = deepfool(model, x)
    w2 = torch.tensor([-1.0, 0, 10, 0], dtype=torch.float64)
    expected = 1.02 * (1 / math.sqrt(101) + 1e-4) * w2 / math.sqrt(101)
    torch.testing.assert_close(res.perturbation.flatten(), expected, rtol=1e-12, atol=0)
    assert (res.iterations.item(), res.adv_label.item(), res.label.item()) == (1, 2, 0)
    # Only the top-2 classes by clean logit as candidates: class 2 is out, class 1 is nearest.
    top2 = deepfool(model, x, num_candidates=2)
    w1 = torch.tensor([-1.0, 1, 0, 0], dtype=torch.float64)
    expected = 1.02 * (0.5 / math.sqrt(2) + 1e-4) * w1 / math.sqrt(2)
    torch.testing.assert_close(top2.perturbation.flatten(), expected, rtol=1e-12, atol=0)
    assert top2.adv_label.item() == 1
    single = deepfool_single(model, x[0], num_candidates=2)
    torch.testing.assert_close(single.perturbation, top2.perturbation, rtol=1e-12, atol=0)


def test_zero_gradient_never_converges_and_never_moves():
    model = LinearNet(torch.zeros(3, 4), torch.tensor([1.0, 0.0, 0.0]))
    x = torch.randn(3, 4, generator=torch.Generator().manual_seed(0))
    for res in (deepfool(model, x, max_iter=5), one_at_a_time(model, x, max_iter=5)):
        assert res.iterations.tolist() == [5, 5, 5]
        assert not res.converged.any()
        assert res.ratio.tolist() == [0.0, 0.0, 0.0]
        assert res.adv_label.tolist() == res.label.tolist() == [0, 0, 0]


@pytest.mark.parametrize("trained, overshoot", [(True, 0.02), (True, 0.0), (False, 0.0)])
def test_batched_equals_one_at_a_time_on_the_mlp(digits, mlp, trained, overshoot):
    torch.manual_seed(3)
    model = mlp if trained else build_model("mlp", "linear", (1, 8, 8), 10, 16).eval()
    x = digits.x_test[:40]
    single = one_at_a_time(model, x, overshoot=overshoot)
    for batch_size in (500, 7):  # one batch; uneven chunks
        res = deepfool(model, x, overshoot=overshoot, batch_size=batch_size)
        torch.testing.assert_close(res.ratio, single.ratio, rtol=1e-4, atol=0)
        torch.testing.assert_close(res.perturbation, single.perturbation, rtol=1e-3, atol=1e-5)
        for name in ("iterations", "converged", "label", "adv_label"):
            assert torch.equal(getattr(res, name), getattr(single, name)), name
    assert res.converged.all()
    assert len(set(res.iterations.tolist())) > 1  # some samples froze while others went on


def test_max_iter_caps_the_iterations(digits, mlp):
    res = deepfool(mlp, digits.x_test[:40], max_iter=1)
    assert res.iterations.max().item() == 1
    assert torch.equal(res.converged, res.adv_label != res.label)
    assert not res.converged.all()  # some inputs need a second step


def test_modes_restored_buffers_kept_and_no_parameter_grads(digits):
    torch.manual_seed(0)
    model = build_model("mlp", "linear", (1, 8, 8), 10, 16)
    model.train()
    model.backbone.net[2].eval()  # a frozen BatchNorm inside a model in train mode
    modes = [m.training for m in model.modules()]
    buffers = [b.clone() for b in model.buffers()]
    x, y = digits.x_test[:12], digits.y_test[:12]
    with torch.no_grad():  # the runner may call from inside no_grad
        deepfool(model, x, max_iter=3)
        deepfool_single(model, x[0], max_iter=3)
        robustness_table(model, x, y, samples=5, max_iter=3)
        lipschitz_estimate(model, x, y)
    assert [m.training for m in model.modules()] == modes
    assert all(torch.equal(a, b) for a, b in zip(buffers, model.buffers()))  # eval: BN stats untouched
    assert all(p.grad is None for p in model.parameters())


def test_robustness_table_keys_ranges_and_seeded_draw(digits, mlp):
    x, y = digits.x_test, digits.y_test
    table = robustness_table(mlp, x, y, samples=30, seed=5)
    assert set(table) == TABLE_KEYS and table["samples"] == 30
    assert 0 < table["robustness_median"] and 0 < table["robustness_mean"] < 10
    assert 0 <= table["deepfool_converged"] <= 1 and 0.8 < table["test_acc"] <= 1
    with torch.no_grad():
        assert table["test_acc"] == pytest.approx((mlp(x).logits.argmax(1) == y).double().mean().item())
    assert robustness_table(mlp, x, y, samples=30, seed=5) == table
    idx = torch.randperm(x.shape[0], generator=torch.Generator().manual_seed(5))[:30]
    res = deepfool(mlp, x[idx])
    ratio = res.ratio.double().numpy()
    correct = (res.label == y[idx]).numpy()
    assert table["robustness_mean"] == pytest.approx(ratio.mean(), rel=1e-12)
    assert table["robustness_median"] == pytest.approx(np.median(ratio), rel=1e-12)
    assert table["robustness_correct_mean"] == pytest.approx(ratio[correct].mean(), rel=1e-12)
    assert table["deepfool_converged"] == pytest.approx(res.converged.double().mean().item())
    assert robustness_table(mlp, x, y, samples=30, seed=6) != table


def test_robustness_table_caps_samples_at_the_data_size(digits, mlp):
    x, y = digits.x_test[:20], digits.y_test[:20]
    table = robustness_table(mlp, x, y, samples=1000, seed=0)
    assert table["samples"] == 20
    assert table["robustness_mean"] == pytest.approx(deepfool(mlp, x).ratio.double().mean().item(), rel=1e-6)


def test_lipschitz_estimate_of_a_linear_model_is_the_weight_difference():
    g = torch.Generator().manual_seed(2)
    weight = torch.randn(2, 5, generator=g, dtype=torch.float64)
    bias = torch.randn(2, generator=g, dtype=torch.float64)
    x, y = torch.randn(9, 5, generator=g, dtype=torch.float64), torch.randint(0, 2, (9,), generator=g)
    est = lipschitz_estimate(LinearNet(weight, bias), x, y, batch_size=4)
    expected = (weight[1] - weight[0]).norm().item()
    assert est == {"lipschitz_max": pytest.approx(expected, rel=1e-12),
                   "lipschitz_mean": pytest.approx(expected, rel=1e-12)}
    # Four classes: the runner-up j* = argmax_{j != y} f_j sets the gradient w_y - w_j*.
    weight, bias = torch.randn(4, 5, generator=g, dtype=torch.float64), torch.zeros(4, dtype=torch.float64)
    y = torch.randint(0, 4, (9,), generator=g)
    logits = (x @ weight.T).scatter(1, y[:, None], -math.inf)
    norms = (weight[y] - weight[logits.argmax(1)]).norm(dim=1)
    est = lipschitz_estimate(LinearNet(weight, bias), x, y)
    assert est["lipschitz_max"] == pytest.approx(norms.max().item(), rel=1e-12)
    assert est["lipschitz_mean"] == pytest.approx(norms.mean().item(), rel=1e-12)


@pytest.mark.parametrize("call", [
    lambda m, x, y: deepfool(m, x, num_candidates=1),
    lambda m, x, y: deepfool(m, x, max_iter=0),
    lambda m, x, y: deepfool(m, x, overshoot=-0.1),
    lambda m, x, y: deepfool(m, x, batch_size=0),
    lambda m, x, y: deepfool(m, x[:0]),
    lambda m, x, y: robustness_table(m, x, y, samples=0),
    lambda m, x, y: robustness_table(m, x, y[:3]),
    lambda m, x, y: lipschitz_estimate(m, x, y[:3]),
])
def test_bad_arguments_are_usage_errors(call):
    model = LinearNet(torch.eye(3), torch.zeros(3))
    with pytest.raises(UsageError):
        call(model, torch.randn(4, 3), torch.zeros(4, dtype=torch.long))


class LogitsOnly(nn.Module):
    """A plain logits module, as torchattacks and foolbox take: model(x).logits."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x).logits


def _assert_same_attack(got, want, rtol: float) -> None:
    """The same ratios (to rtol), and the same iterations and labels exactly."""
    torch.testing.assert_close(got.ratio, want.ratio, rtol=rtol, atol=0)
    for name in ("iterations", "label", "adv_label"):
        assert torch.equal(getattr(got, name), getattr(want, name)), name


def test_a_plain_logits_module_gives_the_same_results(digits, mlp):
    x, y = digits.x_test[:40], digits.y_test[:40]
    plain = LogitsOnly(mlp).eval()
    ours, theirs = deepfool(mlp, x), deepfool(plain, x)
    _assert_same_attack(theirs, ours, rtol=1e-6)
    torch.testing.assert_close(deepfool_single(plain, x[3]).ratio, deepfool_single(mlp, x[3]).ratio,
                               rtol=1e-6, atol=0)
    assert lipschitz_estimate(plain, x, y) == pytest.approx(lipschitz_estimate(mlp, x, y), rel=1e-6)
    assert robustness_table(plain, x, y, samples=10) == pytest.approx(robustness_table(mlp, x, y, samples=10),
                                                                      rel=1e-6)


@pytest.mark.parametrize("chunk_elements", [64 * 3, 64 * 11])  # 3 and 11 rows a chunk
def test_cpu_chunks_and_dropped_rows_change_nothing(digits, mlp, monkeypatch, chunk_elements):
    import lpc_engine.robustness.attack as attack
    x = digits.x_test[:40]
    whole = deepfool(mlp, x)
    monkeypatch.setattr(attack, "CPU_CHUNK_ELEMENTS", chunk_elements)
    res = deepfool(mlp, x)
    torch.testing.assert_close(res.ratio, whole.ratio, rtol=1e-5, atol=0)
    for name in ("iterations", "converged", "label", "adv_label"):
        assert torch.equal(getattr(res, name), getattr(whole, name)), name


def test_the_chain_through_a_narrow_latent_equals_the_generic_gradients(digits):
    # latent 4 < C - 1 = 9: DeepFool takes grad f_k = J_z^T W_k from 4 passes.
    torch.manual_seed(4)
    model = build_model("mlp", "linear", (1, 8, 8), 10, 4).double().eval()
    x = digits.x_test[:30].double()  # float64: the two ways agree to rounding
    res, single = deepfool(model, x), one_at_a_time(model, x)
    generic = deepfool(LogitsOnly(model), x)  # no latent: C - 1 passes
    for ref in (single, generic):
        _assert_same_attack(res, ref, rtol=1e-10)
    assert res.converged.all()


def test_channels_last_images_on_the_cnn_change_nothing():
    # deepfool runs our own conv nets on channels-last images on a CPU; a plain
    # logits module gets the images as given.
    torch.manual_seed(5)
    model = build_model("cnn", "linear", (3, 8, 8), 10, 16).eval()
    x = torch.randn(12, 3, 8, 8, generator=torch.Generator().manual_seed(5))
    res, plain = deepfool(model, x), deepfool(LogitsOnly(model), x)
    _assert_same_attack(res, plain, rtol=1e-5)
    assert res.perturbation.is_contiguous()


def test_batch_norms_become_the_affine_maps_they_are_in_eval_mode():
    from lpc_engine.robustness.frozen_bn import ChannelAffine, with_affine_batch_norms
    torch.manual_seed(6)
    model = build_model("cnn", "linear", (3, 8, 8), 10, 16)
    for m in model.modules():  # non-trivial running statistics and affine parameters
        if isinstance(m, (nn.BatchNorm1d, nn.BatchNorm2d)):
            m.running_mean.uniform_(-1, 1)
            m.running_var.uniform_(0.5, 2)
            m.weight.data.uniform_(0.5, 2)
            m.bias.data.uniform_(-1, 1)
    model.train()
    twin = with_affine_batch_norms(model)
    assert model.training and twin is not model  # the caller's model is left as it was
    assert not any(isinstance(m, nn.BatchNorm2d) for m in twin.modules())
    assert any(isinstance(m, ChannelAffine) for m in twin.modules())
    x = torch.randn(5, 3, 8, 8)
    with torch.no_grad():
        torch.testing.assert_close(twin(x).logits, model.eval()(x).logits, rtol=1e-5, atol=1e-5)
    flat = LinearNet(torch.eye(3), torch.zeros(3))
    assert with_affine_batch_norms(flat) is flat  # nothing to replace
